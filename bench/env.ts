// Bench settings from the environment: a whole number clamped to [min, max], else the fallback.
export const envInt = (name: string, fallback: number, min: number, max: number): number => {
  const n = Number.parseInt(process.env[name] ?? '', 10);
  return Number.isFinite(n) ? Math.min(max, Math.max(min, n)) : fallback;
};
