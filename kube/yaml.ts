// YAML through client-node's serializer (only kube/ imports the client library).
import { dumpYaml, loadAllYaml } from '@kubernetes/client-node';

export function toYaml(obj: unknown): string {
  return dumpYaml(obj, { noRefs: true, lineWidth: 120 } as never);
}

export function fromYamlAll(text: string): unknown[] {
  return loadAllYaml(text);
}
