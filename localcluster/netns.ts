// A simulated cluster network made of Linux network namespaces: one per node and one for the origin, joined by
// bridges in a "switch" namespace through veth pairs, each link shaped by tc token buckets. The private addresses
// live only inside those namespaces: nothing is added to the root namespace's network. Needs root, `ip` and `tc`.
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { isAlive } from './processes.ts';

const run = promisify(execFile);

/** Every namespace this module makes is named `mcnet<pid of its maker>-…`: leftovers of dead makers are found by it. */
const PREFIX = 'mcnet';
const SUBNET = '10.213.0';
const ORIGIN_HOST = 1;
const FIRST_NODE_HOST = 10;

export interface NetworkOptions {
  nodes: number;
  /** Nodes are dealt round-robin into this many zones (default 1); zones reach each other and the origin via a core. */
  zones?: number;
  /** The origin's link, each direction: the slowest link, as an object store or registry seen from a cluster. */
  originBitsPerSecond: number;
  /** Every node's link, each direction. */
  nodeBitsPerSecond: number;
  /** Each zone's uplink to the core, each direction (zones > 1 only); default: the node rate. */
  zoneBitsPerSecond?: number;
  /**
   * Zones > 1: each zone reaches the origin through an egress of its own (a NAT gateway per zone, say), so the
   * origin's rate binds each zone's share of its zone uplink, and the origin's own link runs at that rate times the
   * zones. Default false: the zones share the origin's one link.
   */
  originPerZone?: boolean;
  log?: (line: string) => void;
}

/** One namespace with an address on the simulated network. */
export interface NetnsHost {
  ns: string;
  ip: string;
  /** Zone index (0 for the origin). */
  zone: number;
  /** Command prefix that runs a program inside this namespace. */
  exec: readonly string[];
}

class NetnsError extends Error {
  readonly code: 'Unavailable' | 'Command';
  constructor(code: NetnsError['code'], message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'NetnsError';
    this.code = code;
  }
}

/** Why this machine cannot make the simulated network (not root, no `ip` or `tc`), or undefined when it can. */
export function netnsUnavailable(): string | undefined {
  if (process.getuid?.() !== 0)
    return 'the p2p benchmark makes network namespaces and tc qdiscs: run it as root (e.g. sudo -E npm run bench -- p2p)';
  for (const [tool, pkg] of [
    ['ip', 'iproute2'],
    ['tc', 'iproute2'],
  ] as const) {
    try {
      execFileSync(tool, ['-V'], { stdio: 'ignore' });
    } catch {
      return `the p2p benchmark needs \`${tool}\` (package ${pkg}) on PATH`;
    }
  }
  return undefined;
}

async function cmd(args: readonly string[]): Promise<string> {
  try {
    return (await run(args[0] as string, args.slice(1))).stdout;
  } catch (err) {
    const stderr = String((err as { stderr?: unknown }).stderr ?? '').trim();
    throw new NetnsError('Command', `\`${args.join(' ')}\` failed: ${stderr || (err as Error).message}`, err);
  }
}

async function namespaces(): Promise<string[]> {
  const out = await cmd(['ip', 'netns', 'list']);
  return out
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter(Boolean);
}

/** Kills what still runs inside a namespace, then deletes it (its veth ends, and their peers, go with it). */
async function removeNamespace(ns: string): Promise<void> {
  const pids = (await cmd(['ip', 'netns', 'pids', ns]).catch(() => ''))
    .split('\n')
    .map(Number)
    .filter((p) => p > 0);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
  await cmd(['ip', 'netns', 'del', ns]).catch(() => undefined);
}

/** Deletes the namespaces left by earlier runs that died before removing theirs; returns their names. */
export async function removeLeftoverNamespaces(): Promise<string[]> {
  const left = (await namespaces()).filter((ns) => {
    const m = new RegExp(`^${PREFIX}(\\d+)-`).exec(ns);
    return m && Number(m[1]) !== process.pid && !isAlive(Number(m[1]));
  });
  for (const ns of left) await removeNamespace(ns);
  return left;
}

/** A shaped link's burst: ~4 ms at `bps` (at least 64 KiB, above one GSO packet), in bytes. */
function burstOf(bps: number): string {
  return String(Math.max(64 * 1024, Math.round(bps / 8 / 250)));
}

/** A token bucket on a device's egress: `bps` with a burst of burstOf(bps). */
function tbf(ns: string, dev: string, bps: number): string[] {
  const shape = ['rate', `${bps}bit`, 'burst', burstOf(bps), 'latency', '25ms'];
  return ['tc', '-n', ns, 'qdisc', 'add', 'dev', dev, 'root', 'tbf', ...shape];
}

/**
 * A device's egress at `bps` in all, of which what comes from `originIp` gets at most `originBps` (htb classes; the
 * rest borrows what the origin leaves): a zone's downlink when each zone has its own egress to the origin.
 */
function originShare(ns: string, dev: string, bps: number, originBps: number, originIp: string): string[][] {
  const burst = burstOf(bps);
  const tc = ['tc', '-n', ns];
  const cls = (id: string, parent: string, rate: number, ceil: number): string[] => [
    ...[...tc, 'class', 'add', 'dev', dev, 'parent', parent, 'classid', id, 'htb'],
    ...['rate', `${rate}bit`, 'ceil', `${ceil}bit`, 'burst', burst, 'cburst', burst, 'quantum', '60000'],
  ];
  const share = Math.min(originBps, bps);
  const fromOrigin = ['match', 'ip', 'src', `${originIp}/32`, 'flowid', '1:10'];
  return [
    [...tc, 'qdisc', 'add', 'dev', dev, 'root', 'handle', '1:', 'htb', 'default', '20'],
    cls('1:1', '1:', bps, bps),
    cls('1:10', '1:1', share, share),
    cls('1:20', '1:1', Math.max(1, bps - share), bps),
    [...tc, 'filter', 'add', 'dev', dev, 'parent', '1:', 'protocol', 'ip', 'u32', ...fromOrigin],
  ];
}

/**
 * N node namespaces and one origin namespace on one L2 segment, made of bridges in a switch namespace. Call
 * close() when done (also after a failure); a run that dies first leaves names removeLeftoverNamespaces() finds.
 */
export class SimulatedNetwork {
  readonly nodes: readonly NetnsHost[];
  readonly origin: NetnsHost;
  readonly #switch: string;
  readonly #made: string[] = [];
  readonly #log: (line: string) => void;

  private constructor(o: NetworkOptions) {
    const zones = Math.max(1, o.zones ?? 1);
    const name = (role: string): string => `${PREFIX}${process.pid}-${role}`;
    const host = (ns: string, n: number, zone: number): NetnsHost => ({
      ns,
      ip: `${SUBNET}.${n}`,
      zone,
      exec: ['ip', 'netns', 'exec', ns],
    });
    this.#switch = name('sw');
    this.origin = host(name('origin'), ORIGIN_HOST, 0);
    this.nodes = Array.from({ length: o.nodes }, (_, i) => host(name(`n${i}`), FIRST_NODE_HOST + i, i % zones));
    this.#log = o.log ?? (() => undefined);
  }

  /** Makes the namespaces, links and token buckets; on any failure removes what it made and throws. */
  static async create(o: NetworkOptions): Promise<SimulatedNetwork> {
    if (o.nodes < 1 || FIRST_NODE_HOST + o.nodes > 254) throw new RangeError(`nodes: 1 to ${254 - FIRST_NODE_HOST}`);
    const net = new SimulatedNetwork(o);
    try {
      await net.#build(o);
    } catch (err) {
      await net.close();
      throw err;
    }
    return net;
  }

  async #addNamespace(ns: string): Promise<void> {
    await cmd(['ip', 'netns', 'add', ns]);
    this.#made.push(ns);
    await cmd(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
  }

  /** A veth pair from bridge `bridge` (port `port`) to `eth0` in the host's namespace, shaped both ways. */
  async #attach(h: NetnsHost, bridge: string, port: string, bps: number): Promise<void> {
    const sw = this.#switch;
    await cmd(['ip', '-n', sw, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', h.ns]);
    await cmd(['ip', '-n', sw, 'link', 'set', port, 'master', bridge, 'up']);
    await cmd(['ip', '-n', h.ns, 'addr', 'add', `${h.ip}/24`, 'dev', 'eth0']);
    await cmd(['ip', '-n', h.ns, 'link', 'set', 'eth0', 'up']);
    await cmd(tbf(h.ns, 'eth0', bps)); // host → switch
    await cmd(tbf(sw, port, bps)); // switch → host
  }

  async #build(o: NetworkOptions): Promise<void> {
    const sw = this.#switch;
    const zones = Math.max(1, o.zones ?? 1);
    await this.#addNamespace(sw);
    // One zone: one bridge. Several: a bridge per zone, each with a shaped uplink to a core bridge the origin is on.
    const core = 'core';
    const zoneBridge = (z: number): string => (zones === 1 ? core : `zone${z}`);
    await cmd(['ip', '-n', sw, 'link', 'add', core, 'type', 'bridge']);
    await cmd(['ip', '-n', sw, 'link', 'set', core, 'up']);
    if (zones > 1) {
      const bps = o.zoneBitsPerSecond ?? o.nodeBitsPerSecond;
      for (let z = 0; z < zones; z++) {
        const [down, up] = [`z${z}d`, `z${z}u`];
        await cmd(['ip', '-n', sw, 'link', 'add', zoneBridge(z), 'type', 'bridge']);
        await cmd(['ip', '-n', sw, 'link', 'set', zoneBridge(z), 'up']);
        await cmd(['ip', '-n', sw, 'link', 'add', up, 'type', 'veth', 'peer', 'name', down]);
        await cmd(['ip', '-n', sw, 'link', 'set', up, 'master', zoneBridge(z), 'up']);
        await cmd(['ip', '-n', sw, 'link', 'set', down, 'master', core, 'up']);
        await cmd(tbf(sw, up, bps)); // zone → core
        // core → zone
        if (!o.originPerZone) await cmd(tbf(sw, down, bps));
        else for (const c of originShare(sw, down, bps, o.originBitsPerSecond, this.origin.ip)) await cmd(c);
      }
    }
    await this.#addNamespace(this.origin.ns);
    const perZone = zones > 1 && o.originPerZone === true;
    await this.#attach(this.origin, core, 'origin', o.originBitsPerSecond * (perZone ? zones : 1));
    for (const [i, h] of this.nodes.entries()) {
      await this.#addNamespace(h.ns);
      await this.#attach(h, zoneBridge(h.zone), `n${i}`, o.nodeBitsPerSecond);
    }
    this.#log(
      `network: ${this.nodes.length} nodes in ${zones} zone(s), node links ${o.nodeBitsPerSecond / 1e6} Mbit/s, ` +
        `origin ${o.originBitsPerSecond / 1e6} Mbit/s at ${this.origin.ip}` +
        (zones > 1 ? `, zone uplinks ${(o.zoneBitsPerSecond ?? o.nodeBitsPerSecond) / 1e6} Mbit/s` : '') +
        (perZone ? ', the origin rate per zone (an egress each)' : ''),
    );
  }

  /** Removes every namespace this network made (killing what still runs in them). Safe to call twice. */
  async close(): Promise<void> {
    while (this.#made.length) await removeNamespace(this.#made.pop() as string);
  }
}
