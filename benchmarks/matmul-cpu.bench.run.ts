import { expect, it } from 'vitest';
import { formatMatmulTable, runMatmulCpuBench } from './matmul-cpu.bench.js';

it('float32 matmul vs tfjs-backend-cpu', async () => {
  const rows = await runMatmulCpuBench();
  console.log(`\nfloat32 matmul, n×n·n×n (median of samples)\n${formatMatmulTable(rows)}\n`);
  for (const r of rows) expect(r.oursGflops).toBeGreaterThan(0);
}, 600_000);
