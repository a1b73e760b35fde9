import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { setTimeout as delay } from 'node:timers/promises';

/** A free TCP port on loopback, picked by the kernel. Callers retry if another process takes it first. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/**
 * Kills every registered process when this process dies, however it dies: a detached helper holds an
 * IPC channel to us and reaps the process groups when the channel closes. One per supervisor.
 */
export class Reaper {
  readonly #child: ChildProcess;
  constructor() {
    const script = fileURLToPath(new URL('./reaper.ts', import.meta.url));
    this.#child = spawn(process.execPath, [script], { detached: true, stdio: ['ignore', 'ignore', 'ignore', 'ipc'] });
    this.#child.unref();
    this.#child.channel?.unref();
  }
  watch(pid: number): void {
    this.#child.send({ pid });
  }
  forget(pid: number): void {
    if (this.#child.connected) this.#child.send({ forget: pid });
  }
  close(): void {
    if (!this.#child.connected) return;
    this.#child.send({ done: true });
    this.#child.disconnect();
  }
}

export interface Managed {
  name: string;
  child: ChildProcess;
  logFile: string;
  exited: Promise<number | null>;
}

/**
 * Starts a binary in its own process group with stdout/stderr appended to `logFile`. `prefix` runs it under a
 * command that execs it in place (e.g. `ip netns exec <ns>`), so the pid is still the binary's.
 */
export function startLogged(
  name: string,
  bin: string,
  args: string[],
  logFile: string,
  opts: { detached?: boolean; reaper?: Reaper; env?: NodeJS.ProcessEnv; prefix?: readonly string[] } = {},
): Managed {
  const [cmd, ...rest] = [...(opts.prefix ?? []), bin, ...args] as [string, ...string[]];
  const fd = openSync(logFile, 'a');
  const child = spawn(cmd, rest, { stdio: ['ignore', fd, fd], detached: true, env: opts.env ?? process.env });
  closeSync(fd);
  if (opts.detached) child.unref();
  if (child.pid && opts.reaper) opts.reaper.watch(child.pid);
  const exited = new Promise<number | null>((resolve) => {
    child.on('exit', (code, signal) => resolve(code ?? (signal ? -1 : null)));
    child.on('error', () => resolve(-1));
  });
  return { name, child, logFile, exited };
}

/** The last lines of a log, for error messages. */
function logTail(file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Polls `ready` until it returns true; fails early if the process exits, or after `timeoutMs`. */
export async function waitReady(m: Managed, ready: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exitCode: number | null | undefined;
  void m.exited.then((c) => (exitCode = c));
  while (Date.now() < deadline) {
    if (exitCode !== undefined) throw new ProcessExitedError(m, exitCode);
    if (await ready().catch(() => false)) return;
    await delay(100);
  }
  throw new Error(`${m.name} was not ready after ${timeoutMs / 1000} s; log ${m.logFile}:\n${logTail(m.logFile)}`);
}

export class ProcessExitedError extends Error {
  readonly portInUse: boolean;
  constructor(m: Managed, code: number | null) {
    const tail = logTail(m.logFile);
    super(`${m.name} exited (code ${code}) before it was ready; log ${m.logFile}:\n${tail}`);
    this.portInUse = /address already in use|bind: /i.test(tail);
  }
}

/** SIGTERM the process group, SIGKILL after `graceMs`; resolves when it has exited. */
export async function stopProcess(m: Managed, graceMs = 5000): Promise<void> {
  const pid = m.child.pid;
  if (!pid || m.child.exitCode !== null || m.child.signalCode !== null) return;
  const kill = (sig: NodeJS.Signals): void => {
    try {
      process.kill(-pid, sig);
    } catch {
      // gone already
    }
  };
  kill('SIGTERM');
  const timer = setTimeout(() => kill('SIGKILL'), graceMs);
  await m.exited;
  clearTimeout(timer);
}

/** True while a process with this pid exists. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Stops a process known only by pid (from a state file written by an earlier command). */
export async function stopPid(pid: number, graceMs = 5000): Promise<void> {
  const alive = (): boolean => isAlive(pid);
  const kill = (sig: NodeJS.Signals): void => {
    try {
      process.kill(-pid, sig);
    } catch {
      try {
        process.kill(pid, sig);
      } catch {
        /* gone */
      }
    }
  };
  if (!alive()) return;
  kill('SIGTERM');
  const deadline = Date.now() + graceMs;
  while (alive() && Date.now() < deadline) await delay(100);
  if (alive()) kill('SIGKILL');
  while (alive()) await delay(50);
}
