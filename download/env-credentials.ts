import { SOURCE_REGISTRY } from './registry.ts';
import type { SourceCredentials } from './types.ts';

/** Variables some source reads (the stores' own tools read the same names), from the registry. */
const SOURCE_ENV = new RegExp(
  `^(${SOURCE_REGISTRY.flatMap((s) => [
    ...(s.environment.prefixes ?? []).map((p) => `${p}\\w+`),
    ...(s.environment.names ?? []),
  ]).join('|')})$`,
);

/** The source settings found in a process environment (nothing else of it). */
export function credentialsFromEnv(env: NodeJS.ProcessEnv): SourceCredentials {
  return Object.fromEntries(Object.entries(env).filter(([k, v]) => SOURCE_ENV.test(k) && v !== undefined));
}
