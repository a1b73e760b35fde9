// Each command's flags declared once, as data: the parser options, the range checks and the usage text are made
// from that one table, so a flag's name, default and help cannot drift apart.
import { parseArgs } from 'node:util';
import { durationFlag, MAX_TIMER_MS, quantityFlag, wholeNumberFlag } from './flags.ts';
import { parseAddr } from './server.ts';

interface FlagBase {
  help: string;
  /** Shown after the default inside its parentheses: `(default 4; 1 = one stream)`. */
  note?: string;
  /** Shown instead of the default, for defaults decided elsewhere: `$KUBECONFIG, in-cluster, ~/.kube/config`. */
  defaultText?: string;
}

/** A text flag; `env` is read when the flag is not given, then `default`. `parse` checks it and gives its value. */
interface StringFlag<T = string> extends FlagBase {
  kind: 'string';
  arg: string;
  default?: string;
  env?: string;
  /** Why the command needs it; the flag (or its `env`) must then be given and not be empty. */
  required?: string;
  choices?: readonly string[];
  parse?: (text: string, name: string) => T;
}

interface BooleanFlag extends FlagBase {
  kind: 'boolean';
}

/** A repeatable text flag, collected in order. */
interface ListFlag extends FlagBase {
  kind: 'list';
  arg: string;
}

interface NumberBase extends FlagBase {
  arg?: string;
  env?: string;
  min: number;
  max?: number;
}

/** A whole number from `min` to `max`. */
interface WholeFlag extends NumberBase {
  kind: 'whole';
  default: number;
}

/** A whole number of `unit`, from `min` to `max` (in that unit), given to the command in milliseconds. */
interface DurationFlag extends NumberBase {
  kind: 'duration';
  unit: 'ms' | 's';
  default: number;
}

/** A Kubernetes quantity (`10Gi`), from `min` to `max` bytes, given to the command in bytes. */
interface QuantityFlag extends NumberBase {
  kind: 'quantity';
  default: string;
}

export type FlagSpec = StringFlag<unknown> | BooleanFlag | ListFlag | WholeFlag | DurationFlag | QuantityFlag;
type FlagTable = Readonly<Record<string, FlagSpec>>;

/** `--log-level`, the same for every command: pino's levels. */
export const logLevelFlag = {
  kind: 'string',
  arg: 'LEVEL',
  default: 'info',
  choices: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'],
  help: 'log level',
} as const satisfies StringFlag;

/** `--kubeconfig`, the same for every command that talks to the apiserver. */
export const kubeconfigFlag = {
  kind: 'string',
  arg: 'FILE',
  help: 'kubeconfig',
  defaultText: '$KUBECONFIG, in-cluster, ~/.kube/config',
} as const satisfies StringFlag;

/** `parse` of a listen address flag: checks `host:port` and keeps the text. */
export function listenAddress(text: string, name: string): string {
  parseAddr(text, name);
  return text;
}

/** A command's flags, and the ones of which exactly one must be given. */
export interface CommandFlags<F extends FlagTable = FlagTable> {
  /** As typed after `modelcache`: `daemon`. */
  command: string;
  flags: F;
  /** Groups of flags of which exactly one is given, with what the group means. */
  exactlyOne?: ReadonlyArray<{ flags: readonly string[]; what: string }>;
}

type ValueOf<S> = S extends { kind: 'boolean' }
  ? boolean
  : S extends { kind: 'list' }
    ? string[]
    : S extends { kind: 'whole' | 'duration' | 'quantity' }
      ? number
      : S extends { kind: 'string' }
        ? | (S extends { parse: (text: string, name: string) => infer T } ? T : string)
          | (S extends { default: string } | { required: string } ? never : undefined)
        : never;

/** The parsed flags of a table: numbers in bytes or milliseconds, texts checked, lists as arrays. */
type FlagValues<F extends FlagTable> = { -readonly [K in keyof F]: ValueOf<F[K]> };

/** `--help` was asked for, or the flags, every one checked. */
type Parsed<F extends FlagTable> = { help: true } | { help: false; flags: FlagValues<F> };

/** Declares a command's flags; keeps the table's literal types so `parseFlags` knows each value's type. */
export function defineFlags<const F extends FlagTable, const K extends keyof F & string>(spec: {
  command: string;
  flags: F;
  exactlyOne?: ReadonlyArray<{ flags: readonly K[]; what: string }>;
}): CommandFlags<F> {
  return spec;
}

function parserOption(spec: FlagSpec): { type: 'string' | 'boolean'; multiple?: true } {
  if (spec.kind === 'boolean') return { type: 'boolean' };
  if (spec.kind === 'list') return { type: 'string', multiple: true };
  return { type: 'string' };
}

/** One flag's value from its text: every number range-checked, every choice and `parse` applied. */
function flagValue(name: string, spec: FlagSpec, given: unknown, env: NodeJS.ProcessEnv): unknown {
  switch (spec.kind) {
    case 'boolean':
      return given === true;
    case 'list':
      return Array.isArray(given) ? [...(given as string[])] : [];
    case 'whole':
    case 'duration':
    case 'quantity': {
      const text = (given as string | undefined) ?? (spec.env ? env[spec.env] : undefined) ?? String(spec.default);
      const range = { min: spec.min, ...(spec.max === undefined ? {} : { max: spec.max }) };
      if (spec.kind === 'whole') return wholeNumberFlag(name, text, spec.min, spec.max);
      if (spec.kind === 'duration') return durationFlag(name, text, spec.unit, range);
      return quantityFlag(name, text, range);
    }
    case 'string': {
      const text = (given as string | undefined) ?? (spec.env ? env[spec.env] : undefined) ?? spec.default;
      if (spec.required !== undefined && !text)
        throw new Error(`--${name} ${spec.arg}${spec.env ? ` (or $${spec.env})` : ''} is required: ${spec.required}`);
      if (text === undefined) return undefined;
      if (spec.choices && !spec.choices.includes(text))
        throw new Error(`--${name} must be one of ${spec.choices.join(', ')} (got '${text}')`);
      return spec.parse ? spec.parse(text, name) : text;
    }
  }
}

/**
 * Parses `args` against the command's table: unknown flags and stray words are refused with the usage, and every
 * value is checked before the command starts anything, so a bad one is one clear error, never a half-started process.
 */
export function parseFlags<F extends FlagTable>(
  spec: CommandFlags<F>,
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
): Parsed<F> {
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: true; short?: string }> = {
    help: { type: 'boolean', short: 'h' },
  };
  for (const [name, flag] of Object.entries(spec.flags)) options[name] = parserOption(flag);
  let values: Record<string, unknown>;
  try {
    ({ values } = parseArgs({ args, options, strict: true, allowPositionals: false }));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (!code?.startsWith('ERR_PARSE_ARGS_')) throw err;
    const unknown =
      code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? /'([^']+)'/.exec((err as Error).message)?.[1] : undefined;
    const why = unknown ? `${unknown} is not a flag of modelcache ${spec.command}` : (err as Error).message;
    throw new Error(`${why}\n\n${usage(spec)}`, { cause: err });
  }
  if (values.help === true) return { help: true };
  const flags: Record<string, unknown> = {};
  for (const [name, flag] of Object.entries(spec.flags)) flags[name] = flagValue(name, flag, values[name], env);
  for (const group of spec.exactlyOne ?? [])
    if (group.flags.filter((name) => Boolean(flags[name])).length !== 1)
      throw new Error(
        `give one of ${group.flags.map((n) => `--${n} ${argOf(spec.flags[n]!)}`).join(' or ')}: ${group.what}`,
      );
  return { help: false, flags: flags as FlagValues<F> };
}

function argOf(spec: FlagSpec): string {
  if (spec.kind === 'boolean') return '';
  if (spec.kind === 'string' || spec.kind === 'list') return spec.arg;
  return spec.arg ?? (spec.kind === 'quantity' ? 'Q' : 'N');
}

/** The accepted values, in words: `1-64`, `≥ 1`, `a quantity 1Mi-1Gi`, `one of debug, info`. */
function accepted(spec: FlagSpec): string | undefined {
  switch (spec.kind) {
    case 'boolean':
    case 'list':
      return undefined;
    case 'string':
      return spec.choices ? `one of ${spec.choices.join(', ')}` : undefined;
    case 'whole':
    case 'duration': {
      const cap = spec.kind === 'duration' ? Math.floor(MAX_TIMER_MS / (spec.unit === 'ms' ? 1 : 1000)) : Infinity;
      const max = Math.min(spec.max ?? Infinity, cap);
      return max >= Number.MAX_SAFE_INTEGER ? `≥ ${spec.min}` : `${spec.min}-${max}`;
    }
    case 'quantity':
      return spec.max === undefined
        ? `a quantity ≥ ${quantityText(spec.min)}`
        : `a quantity ${quantityText(spec.min)}-${quantityText(spec.max)}`;
  }
}

function quantityText(bytes: number): string {
  for (const [suffix, size] of [
    ['Ti', 2 ** 40],
    ['Gi', 2 ** 30],
    ['Mi', 2 ** 20],
    ['Ki', 2 ** 10],
  ] as const)
    if (bytes >= size && bytes % size === 0) return `${bytes / size}${suffix}`;
  return String(bytes);
}

/** The default as the usage shows it, with the flag's note: `(default 4; 1 = one stream)`. */
function defaults(spec: FlagSpec): string | undefined {
  const shown =
    spec.defaultText !== undefined
      ? `default: ${spec.defaultText}`
      : spec.kind === 'boolean' || spec.kind === 'list'
        ? undefined
        : spec.default !== undefined
          ? `default ${spec.default}`
          : spec.env
            ? `default: $${spec.env}`
            : undefined;
  const text = [shown, spec.note].filter(Boolean).join('; ');
  return text ? `(${text})` : undefined;
}

/** Rows of `left` and `text`, `text` in one column and wrapped at `width`: the look of every usage text. */
export function columns(rows: ReadonlyArray<[string, string]>, width = 118): string {
  const at = Math.max(...rows.map(([left]) => left.length)) + 2;
  return rows
    .map(([left, text]) => {
      const lines: string[] = [];
      let line = left.padEnd(at);
      for (const word of text.split(' ')) {
        if (line.length > at && line.length + 1 + word.length > width) {
          lines.push(line);
          line = ' '.repeat(at) + word;
        } else line += (line.length > at ? ' ' : '') + word;
      }
      lines.push(line);
      return lines.join('\n');
    })
    .join('\n');
}

/** How the command is called: its required flags and its exactly-one groups. */
function synopsis<F extends FlagTable>(spec: CommandFlags<F>): string {
  const table: FlagTable = spec.flags;
  const one = (name: string): string => `--${name} ${argOf(table[name]!)}`;
  const groups = (spec.exactlyOne ?? []).map((g) => `(${g.flags.map(one).join(' | ')})`);
  const required = Object.entries(table)
    .filter(([, f]) => f.kind === 'string' && f.required !== undefined)
    .map(([name]) => one(name));
  return ['usage: modelcache', spec.command, ...groups, ...required, '[flags]'].join(' ');
}

/** The command's `--help`, generated from its table: each flag, its argument, its help, range and default. */
export function usage<F extends FlagTable>(spec: CommandFlags<F>): string {
  const table: FlagTable = spec.flags;
  const rows = Object.entries(table).map(([name, flag]): [string, string] => {
    const arg = argOf(flag);
    const range = accepted(flag);
    const help = [flag.help, range].filter(Boolean).join(', ');
    // The default stays on one line: NUL joins its words until the rows are laid out.
    const shown = defaults(flag)?.replaceAll(' ', '\0');
    return [`  --${name}${arg ? ` ${arg}` : ''}`, [help, shown].filter(Boolean).join(' ')];
  });
  return `${synopsis(spec)}\n\n${columns(rows).replaceAll('\0', ' ')}`;
}
