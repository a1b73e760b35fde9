import { toYaml } from '../kube/yaml.ts';
import { allCrds } from './schema.ts';

const HEADER = '# Generated from api/schema.ts by `npm run manifests`. Do not edit.\n';

/** Path (relative to the repo) and YAML text of each generated CRD manifest. */
export function crdFiles(): Array<[string, string]> {
  return allCrds.map((c) => [`manifests/crds/${c.spec.names.plural}.yaml`, HEADER + toYaml(c)]);
}
