import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseQuantity } from '../../api/quantity.ts';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MAX_TIMER_MS, durationFlag, quantityFlag, wholeNumberFlag } from '../../ops/flags.ts';
import { defineFlags, logLevelFlag, parseFlags, usage, type CommandFlags, type FlagSpec } from '../../ops/flag-spec.ts';
import { agentFlags } from '../../agent/main.ts';
import { controllerFlags, runController } from '../../controller/main.ts';
import { daemonFlags } from '../../daemon/flags.ts';
import { runDaemon } from '../../daemon/main.ts';

test('wholeNumberFlag: whole numbers in range pass; the error names the flag, the range and the value', () => {
  assert.equal(wholeNumberFlag('workers', '4'), 4);
  assert.equal(wholeNumberFlag('grace', '0', 0), 0);
  assert.equal(wholeNumberFlag('poll-ms', '3600000', 50, 3_600_000), 3_600_000);
  for (const bad of ['0', '-1', '1.5', 'abc', '', ' ', '0x10', '1e3', 'Infinity', '99999999999999999999'])
    assert.throws(() => wholeNumberFlag('workers', bad), /--workers must be a whole number ≥ 1 \(got '/, bad);
  assert.throws(
    () => wholeNumberFlag('workers', undefined),
    /--workers must be a whole number ≥ 1 \(got 'undefined'\)/,
  );
  assert.throws(
    () => wholeNumberFlag('poll-ms', '1000000000000', 50, 3_600_000),
    /^Error: --poll-ms must be a whole number from 50 to 3600000 \(got '1000000000000'\)$/,
  );
  assert.throws(() => wholeNumberFlag('poll-ms', '49', 50, 3_600_000), /from 50 to 3600000 \(got '49'\)/);
});

test('durationFlag: returns milliseconds and refuses waits a timer cannot keep (above 2^31-1 ms it fires after 1 ms)', () => {
  assert.equal(durationFlag('stall-timeout-seconds', '30', 's'), 30_000);
  assert.equal(durationFlag('progress-interval-ms', '2000', 'ms'), 2000);
  assert.equal(durationFlag('progress-interval-ms', String(MAX_TIMER_MS), 'ms'), MAX_TIMER_MS);
  assert.equal(durationFlag('grace', '0', 's', { min: 0 }), 0);
  assert.ok(durationFlag('stall-timeout-seconds', '2147483', 's') <= MAX_TIMER_MS);
  assert.throws(
    () => durationFlag('stall-timeout-seconds', '3000000', 's'),
    /^Error: --stall-timeout-seconds must be a whole number of seconds from 1 to 2147483 \(got '3000000'\)$/,
  );
  assert.throws(
    () => durationFlag('progress-interval-ms', String(MAX_TIMER_MS + 1), 'ms'),
    /--progress-interval-ms must be a whole number of milliseconds from 1 to 2147483647/,
  );
  assert.throws(
    () => durationFlag('poll-ms', '10', 'ms', { min: 50, max: 3_600_000 }),
    /from 50 to 3600000 \(got '10'\)/,
  );
  for (const bad of ['-5', '1.5', 'x', ''])
    assert.throws(() => durationFlag('stall-timeout-seconds', bad, 's'), /--stall-timeout-seconds must be/, bad);
});

test('quantityFlag: Kubernetes quantities as bytes; negatives, garbage, overflow and out-of-range values are refused', () => {
  assert.equal(quantityFlag('safety-margin', '1Gi'), 2 ** 30);
  assert.equal(quantityFlag('safety-margin', '0'), 0);
  assert.equal(quantityFlag('part-size', '16Mi', { min: 1 }), 16 * 2 ** 20);
  assert.equal(quantityFlag('part-size', '500M', { min: 1, max: 5 * 2 ** 30 }), 5e8);
  for (const bad of ['-1Gi', '-1', '10GB', 'lots', '', '1e99', '1e999', '8Ei'])
    assert.throws(
      () => quantityFlag('safety-margin', bad),
      (err: Error) =>
        err.message.startsWith(`--safety-margin must be a quantity ≥ 0 bytes`) &&
        err.message.endsWith(`(got '${bad}')`),
      bad,
    );
  assert.throws(
    () => quantityFlag('part-size', '0', { min: 1, max: 5 * 2 ** 30 }),
    /^Error: --part-size must be a quantity from 1 to 5Gi bytes, e\.g\. 10Gi, 500Mi or 2G \(got '0'\)$/,
  );
  assert.throws(() => quantityFlag('part-size', '6Gi', { min: 1, max: 5 * 2 ** 30 }), /\(got '6Gi'\)/);
  assert.throws(() => quantityFlag('part-size', undefined, { min: 1 }), /--part-size must be a quantity ≥ 1 bytes/);
});

test('parseQuantity: a quantity too large for a number is an error, not Infinity', () => {
  assert.throws(() => parseQuantity('1e999', 'spec.modelSize'), /spec\.modelSize: '1e999' is too large to be a size/);
  assert.equal(Object.is(parseQuantity('-0'), 0), true);
});

const commands: readonly CommandFlags[] = [daemonFlags, agentFlags, controllerFlags];

/** Each flag's entry in a usage text: its line and the lines that continue it, joined. */
function entries(text: string): Map<string, string> {
  const found = new Map<string, string>();
  let name: string | undefined;
  for (const line of text.split('\n')) {
    const start = /^ {2}--([a-z-]+)/.exec(line);
    if (start) found.set((name = start[1]!), line.trim());
    else if (name && /^ {3,}\S/.test(line)) found.set(name, `${found.get(name)} ${line.trim()}`);
    else name = undefined;
  }
  return found;
}

test('usage: every declared flag of every command is listed once, with its default, its range and its help', () => {
  for (const spec of commands) {
    const text = usage(spec);
    assert.ok(text.startsWith(`usage: modelcache ${spec.command} `), text);
    const listed = entries(text);
    assert.deepEqual([...listed.keys()], Object.keys(spec.flags), `modelcache ${spec.command}: the flags listed`);
    for (const [name, flag] of Object.entries(spec.flags) as Array<[string, FlagSpec]>) {
      const entry = listed.get(name)!;
      const where = `modelcache ${spec.command} --${name}: ${entry}`;
      assert.ok(entry.includes(flag.help), where);
      if (flag.defaultText !== undefined) assert.ok(entry.includes(`(default: ${flag.defaultText}`), where);
      else if ('default' in flag && flag.default !== undefined)
        assert.ok(entry.includes(`(default ${flag.default}`), where);
      if ('min' in flag) assert.match(entry, new RegExp(`(≥ |\\b)${flag.min}\\b|≥ \\d|\\d+[KMGT]i-`), where);
      if (flag.kind === 'string' && flag.choices) assert.ok(entry.includes(flag.choices.join(', ')), where);
    }
    for (const line of text.split('\n')) assert.ok(line.length <= 120, `modelcache ${spec.command}: ${line}`);
  }
  assert.match(
    usage(agentFlags),
    /^usage: modelcache agent \(--models-json FILE \| --configmap NAME\) --model-dir DIR/,
  );
  assert.match(usage(daemonFlags), /^usage: modelcache daemon --node-name N --root DIR \[flags\]\n/);
});

test('usage: the defaults shown are the values a command runs with when the flag is not given', () => {
  const daemon = parseFlags(daemonFlags, ['--node-name', 'n1', '--root', '/cache'], {});
  assert.equal(daemon.help, false);
  if (daemon.help) return;
  assert.deepEqual(
    {
      margin: daemon.flags['safety-margin'],
      stall: daemon.flags['stall-timeout-seconds'],
      part: daemon.flags['part-size'],
      grace: daemon.flags['orphan-grace-seconds'],
      progress: daemon.flags['progress-interval-ms'],
      concurrent: daemon.flags['max-concurrent'],
      listen: daemon.flags.listen,
      namespace: daemon.flags.namespace,
      fileRoots: daemon.flags['allow-file-root'],
      socket: daemon.flags['artifact-socket'],
      level: daemon.flags['log-level'],
    },
    {
      margin: 2 ** 30,
      stall: 30_000,
      part: 16 * 2 ** 20,
      grace: 600_000,
      progress: 2000,
      concurrent: 2,
      listen: '127.0.0.1:8081',
      namespace: 'modelcache-system',
      fileRoots: [],
      socket: undefined,
      level: 'info',
    },
  );
  const controller = parseFlags(controllerFlags, [], { POD_NAMESPACE: 'ops' });
  assert.ok(!controller.help);
  if (controller.help) return;
  assert.equal(controller.flags['resync-seconds'], 300_000);
  assert.equal(controller.flags['leader-elect'], false);
  assert.equal(controller.flags['leader-election-namespace'], 'ops', '$POD_NAMESPACE when the flag is not given');
  assert.equal(controller.flags.workers, 4);
});

const demo = defineFlags({
  command: 'demo',
  exactlyOne: [{ flags: ['file', 'map'], what: 'where the list is' }],
  flags: {
    name: { kind: 'string', arg: 'N', env: 'DEMO_NAME', required: 'the demo names things', help: 'a name' },
    file: { kind: 'string', arg: 'FILE', help: 'a file' },
    map: { kind: 'string', arg: 'NAME', help: 'a map' },
    verbose: { kind: 'boolean', help: 'say more' },
    root: { kind: 'list', arg: 'DIR', help: 'roots' },
    count: { kind: 'whole', default: 2, min: 1, max: 8, help: 'how many' },
    wait: { kind: 'duration', unit: 's', default: 5, min: 0, max: 60, help: 'how long' },
    size: { kind: 'quantity', default: '1Mi', min: 1, help: 'how big' },
    port: { kind: 'string', arg: 'ADDR', default: ':1', help: 'where', parse: (t) => Number(t.split(':')[1]) },
    'log-level': logLevelFlag,
  },
});

test('parseFlags: typed values, env fallback, repeatable lists, and every number range-checked', () => {
  const parsed = parseFlags(
    demo,
    ['--file', 'f', '--root', 'a', '--root=b', '--verbose', '--count', '8', '--wait=0', '--size', '2Gi', '--port=:9'],
    { DEMO_NAME: 'from-env' },
  );
  assert.deepEqual(parsed, {
    help: false,
    flags: {
      name: 'from-env',
      file: 'f',
      map: undefined,
      verbose: true,
      root: ['a', 'b'],
      count: 8,
      wait: 0,
      size: 2 ** 31,
      port: 9,
      'log-level': 'info',
    },
  });
  assert.deepEqual(parseFlags(demo, ['-h'], {}), { help: true }, '--help needs no other flag');
  const ok = ['--name', 'n', '--map', 'm'];
  assert.throws(
    () => parseFlags(demo, [...ok, '--count', '9'], {}),
    /^Error: --count must be a whole number from 1 to 8/,
  );
  assert.throws(
    () => parseFlags(demo, [...ok, '--wait', '61'], {}),
    /--wait must be a whole number of seconds from 0 to 60/,
  );
  assert.throws(() => parseFlags(demo, [...ok, '--size', '0'], {}), /--size must be a quantity ≥ 1 bytes/);
  assert.throws(
    () => parseFlags(demo, [...ok, '--log-level', 'loud'], {}),
    /--log-level must be one of trace, .* \(got 'loud'\)/,
  );
  assert.throws(
    () => parseFlags(demo, ['--map', 'm'], {}),
    /^Error: --name N \(or \$DEMO_NAME\) is required: the demo names things$/,
  );
  assert.throws(() => parseFlags(demo, ['--map', 'm', '--name='], {}), /--name N .* is required/, 'empty is not given');
  assert.throws(
    () => parseFlags(demo, ['--name', 'n'], {}),
    /^Error: give one of --file FILE or --map NAME: where the list is$/,
  );
  assert.throws(() => parseFlags(demo, [...ok, '--file', 'f'], {}), /give one of --file FILE or --map NAME/);
});

test('parseFlags: unknown flags, stray words and missing values are refused with the usage', () => {
  const ok = ['--name', 'n', '--map', 'm'];
  for (const [args, why] of [
    [[...ok, '--colour', 'red'], /^--colour is not a flag of modelcache demo\n\nusage: modelcache demo /],
    [[...ok, 'extra'], /extra/],
    [[...ok, '--count'], /--count/],
    [[...ok, '--verbose=yes'], /--verbose/],
  ] as const)
    assert.throws(
      () => parseFlags(demo, [...args], {}),
      (err: Error) => why.test(err.message) && err.message.endsWith(usage(demo)),
      args.join(' '),
    );
});

test('commands refuse a bad flag before they start anything: unknown flags and log levels name the flag', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'modelcache-flags-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const base = ['--node-name', 'n1', '--root', join(root, 'cache'), '--kubeconfig', join(root, 'none')];
  await assert.rejects(runDaemon([...base, '--log-level', 'loud']), /--log-level must be one of trace, debug, info/);
  await assert.rejects(
    runDaemon([...base, '--max-concurent', '4']),
    /--max-concurent is not a flag of modelcache daemon/,
  );
  await assert.rejects(
    runController(['--kubeconfig', join(root, 'none'), '--metrics-addr', '127.0.0.1:99999']),
    /^Error: --metrics-addr 127\.0\.0\.1:99999: the port must be a whole number/,
  );
  assert.deepEqual(await readdir(root), [], 'nothing was created: the flags are checked first');
});
