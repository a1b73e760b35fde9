// Plain YAML (js-yaml, the parser client-node itself uses). Not client-node's dumpYaml/loadAllYaml:
// those pass objects through its typed model serializer, which drops fields its models spell
// differently (x-kubernetes-validations, default, x-kubernetes-int-or-string in CRD schemas).
import { dump, loadAll } from 'js-yaml';

export function toYaml(obj: unknown): string {
  return dump(obj, { noRefs: true, lineWidth: 120 });
}

export function fromYamlAll(text: string): unknown[] {
  return loadAll(text);
}
