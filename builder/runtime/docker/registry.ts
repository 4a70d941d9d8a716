/** The registry host of an image reference (`docker.io` when it names none), as the engine reads it. */
export function registryHost(ref: string): string {
  const first = ref.split('/')[0] ?? '';
  return ref.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost') ? first : 'docker.io';
}
