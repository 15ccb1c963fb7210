// Address planner: which destination pair, and (when binding) which source address and port, each global
// slot uses. Default: no bind; slots spread round robin over destination (address, port) pairs, each of
// which has its own full ephemeral port range. With --source, slots spread over the sources and take
// explicit local ports in order (the kernel then does no port search per bind).
export function targetIndexOf(globalSlot: number, targets: number): number {
  return globalSlot % targets;
}

export function sourceIndexOf(globalSlot: number, sources: number): number {
  return globalSlot % sources;
}

/** Explicit local port for a slot, or undefined to let the kernel choose. */
export function localPortOf(globalSlot: number, sources: number, portBase: number): number | undefined {
  if (portBase <= 0 || sources === 0) return undefined;
  return portBase + Math.floor(globalSlot / sources);
}
