// The real timers behind the Timers port. Unref'd: a pending retry or resync never keeps a stopping
// process alive.
import type { Timers } from './ports.js';

export const systemTimers: Timers = {
  after: (ms, fn) => {
    const timer = setTimeout(fn, Math.max(0, ms));
    timer.unref();
    return () => clearTimeout(timer);
  },
};
