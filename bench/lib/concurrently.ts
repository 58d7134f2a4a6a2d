/**
 * Call `task` once for each of `count` indices, at most `width` at a time, and resolve with the
 * results in index order (the benchmarks' login and visit passes over thousands of sessions).
 */
export async function concurrently<T>(
  count: number,
  width: number,
  task: (index: number) => Promise<T>,
): Promise<T[]> {
  const results = new Array<T>(count);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const index = next++;
      results[index] = await task(index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, count) }, worker));
  return results;
}
