#!/usr/bin/env node
// npm run cluster -- start|stop|status --dir DIR: a local control plane for trying modelcache by hand.
import { parseArgs } from 'node:util';
import { readFile, writeFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ControlPlane, type ControlPlaneState } from '../localcluster/control-plane.ts';
import { ensureBinaries } from '../localcluster/binaries.ts';
import { isAlive, stopPid } from '../localcluster/processes.ts';

const usage = `usage: npm run cluster -- <start|stop|status> --dir DIR

  start   build the control-plane binaries if needed (first run only), start etcd,
          kube-apiserver, kube-controller-manager (garbage collector, namespaces,
          PersistentVolume binder, service accounts) and kube-scheduler on free loopback
          ports with data under DIR, write DIR/kubeconfig and return; they keep running.
          No kubelet runs: nodes are simulated, pods are scheduled and bound but not run
  stop    stop what 'start' started in DIR
  status  print the state of DIR`;

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { dir: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
});
const cmd = positionals[0];
if (values.help || !cmd || !['start', 'stop', 'status'].includes(cmd)) {
  console.log(usage);
  process.exit(values.help ? 0 : 2);
}
if (!values.dir) {
  console.error('--dir DIR is required: where the control plane keeps its data, certificates, logs and kubeconfig');
  process.exit(2);
}
const dir = resolve(values.dir);
const stateFile = join(dir, 'state.json');

async function readState(): Promise<ControlPlaneState | undefined> {
  try {
    return JSON.parse(await readFile(stateFile, 'utf8')) as ControlPlaneState;
  } catch {
    return undefined;
  }
}

try {
  if (cmd === 'start') {
    const existing = await readState();
    if (existing && Object.values(existing.pids).some(isAlive)) {
      console.error(
        `a control plane is already running in ${dir} (${existing.server}); 'npm run cluster -- stop --dir ${values.dir}' first`,
      );
      process.exit(1);
    }
    const binaries = await ensureBinaries({ log: (l) => console.error(l) });
    const t0 = Date.now();
    const cp = await ControlPlane.start({
      dir,
      binaries,
      detached: true,
      scheduler: true,
      log: (l) => console.error(l),
    });
    await writeFile(stateFile, JSON.stringify(cp.state(), null, 2));
    console.log(`control plane ready in ${((Date.now() - t0) / 1000).toFixed(1)} s at ${cp.server}`);
    console.log(`  kubectl --kubeconfig ${cp.kubeconfig} get ns`);
    console.log(`  logs: ${join(dir, 'logs')}`);
    process.exit(0);
  } else if (cmd === 'stop') {
    const state = await readState();
    if (!state) {
      console.log(`nothing running in ${dir}`);
    } else {
      // Newest first: components the demo added (controller, daemons), then the control plane.
      const order = ['kube-scheduler', 'kube-controller-manager', 'kube-apiserver', 'etcd'];
      const names = Object.keys(state.pids).sort((a, b) => order.indexOf(a) - order.indexOf(b));
      for (const name of names) {
        const pid = state.pids[name];
        if (pid) await stopPid(pid);
      }
      await rm(stateFile, { force: true });
      console.log(`stopped the control plane in ${dir}`);
    }
  } else {
    const state = await readState();
    if (!state) console.log(`nothing running in ${dir}`);
    else
      for (const [name, pid] of Object.entries(state.pids))
        console.log(`${name}\tpid ${pid}\t${isAlive(pid) ? 'running' : 'gone'}`);
  }
} catch (err) {
  console.error((err as Error).message);
  process.exit(1);
}
