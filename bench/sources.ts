// Object-store download: one big object from a local S3 server (versitygw on tmpfs, keep-alive)
// fetched as one stream and as parallel ranged GETs, each compared with `curl --aws-sigv4 -o`
// measured in the same run. MODELCACHE_BENCH_SIZE_MIB (default 1024) sets the object size.
import { execFileSync, spawn } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { downloadModel } from '../download/fetch.ts';
import { S3_ACCESS_KEY, S3_SECRET_KEY, S3Server } from '../test/helpers/object-stores.ts';
import { Reaper } from '../localcluster/processes.ts';
import type { BenchFigure } from './table.ts';

const MiB = 2 ** 20;

async function curlSeconds(url: string, out: string): Promise<number> {
  const t0 = performance.now();
  const code = await new Promise<number | null>((resolve, reject) => {
    const child = spawn(
      'curl',
      [
        '-sf',
        '-H',
        'x-amz-content-sha256: UNSIGNED-PAYLOAD',
        '--aws-sigv4',
        'aws:amz:us-east-1:s3',
        '--user',
        `${S3_ACCESS_KEY}:${S3_SECRET_KEY}`,
        '-o',
        out,
        url,
      ],
      { stdio: 'ignore' },
    );
    child.on('error', reject);
    child.on('close', resolve);
  });
  if (code !== 0) throw new Error(`curl failed (exit ${code})`);
  return (performance.now() - t0) / 1000;
}

export async function benchSources(): Promise<BenchFigure[]> {
  const sizeMiB = Number(process.env.MODELCACHE_BENCH_SIZE_MIB ?? '1024');
  const base = await mkdtemp('/dev/shm/modelcache-bench-s3-');
  const reaper = new Reaper();
  const s3 = await S3Server.start(reaper, { dir: join(base, 's3') });
  try {
    process.stderr.write(`sources bench: writing a ${sizeMiB} MiB object into the S3 server's tmpfs…\n`);
    await mkdir(join(s3.root, 'bench'), { recursive: true });
    const block = Buffer.alloc(16 * MiB);
    let left = sizeMiB * MiB;
    await pipeline(
      Readable.from(
        (function* () {
          while (left > 0) {
            const n = Math.min(left, block.length);
            left -= n;
            yield randomFillSync(block.subarray(0, n));
          }
        })(),
      ),
      createWriteStream(join(s3.root, 'bench', 'model.bin')),
    );
    const credentials = {
      AWS_ACCESS_KEY_ID: S3_ACCESS_KEY,
      AWS_SECRET_ACCESS_KEY: S3_SECRET_KEY,
      AWS_ENDPOINT_URL: s3.endpoint,
    };
    const viaSource = async (partParallelism: number): Promise<number> => {
      const workDir = join(base, `w-${partParallelism}`);
      const t0 = performance.now();
      await downloadModel({
        uri: 's3://bench/model.bin',
        workDir,
        maxBytes: sizeMiB * MiB * 1.05,
        signal: AbortSignal.timeout(900_000),
        credentials,
        options: { partParallelism, partSizeBytes: 16 * MiB },
      });
      const s = (performance.now() - t0) / 1000;
      await rm(workDir, { recursive: true });
      return s;
    };
    const REPS = 3;
    const samples = { curl: [] as number[], single: [] as number[], ranged: [] as number[] };
    for (let rep = 0; rep < REPS; rep++) {
      samples.curl.push(await curlSeconds(`${s3.endpoint}/bench/model.bin`, join(base, 'curl.bin')));
      await rm(join(base, 'curl.bin'));
      samples.single.push(await viaSource(1));
      samples.ranged.push(await viaSource(4));
    }
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
    const [curlS, singleS, rangedS] = [median(samples.curl), median(samples.single), median(samples.ranged)];
    const mbps = (s: number): number => sizeMiB / s;
    return [
      {
        name: `s3: ${sizeMiB} MiB object, one stream (median of ${REPS})`,
        value: mbps(singleS),
        unit: 'MiB/s',
        reference: mbps(curlS),
        ratio: curlS / singleS,
        goal: 'reported vs curl --aws-sigv4',
        ok: true,
      },
      {
        name: `s3: ${sizeMiB} MiB object, 4 ranged GETs of 16 MiB (median of ${REPS})`,
        value: mbps(rangedS),
        unit: 'MiB/s',
        reference: mbps(singleS),
        ratio: singleS / rangedS,
        goal: 'ranged vs one stream, reported',
        ok: true,
      },
    ];
  } finally {
    await s3.stop();
    reaper.close();
    execFileSync('rm', ['-rf', base]);
  }
}
