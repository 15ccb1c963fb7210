// How a sweep rounds and sums up the figures it keeps in report.json: two or three decimals (more would be
// noise at one sample a second), seconds on the sweep's clocks, and the mean and peak of a round's samples.

/** Two decimals: seconds, ms, the machine's busy cores, µs per message. */
export const round2 = (v: number): number => Math.round(v * 100) / 100;

/** Three decimals: a process's cores (an idle one uses thousandths of a core), error percentages. */
export const round3 = (v: number): number => Math.round(v * 1000) / 1000;

/** Seconds since `start` (a performance.now() reading), as samples are stamped. */
export const secondsSince = (start: number): number => round2((performance.now() - start) / 1000);

/** 0 for no samples, so a round that never sampled still has figures to show. */
export const mean = (xs: number[]): number => (xs.length > 0 ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);

/** The largest; 0 for no samples, as `mean`. */
export const peak = (xs: number[]): number => (xs.length > 0 ? Math.max(...xs) : 0);
