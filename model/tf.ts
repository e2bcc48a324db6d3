// TensorFlow.js loader: @tensorflow/tfjs-node when it is installed (the production image: native
// kernels), else the pure JS CPU backend of @tensorflow/tfjs, which installs and runs offline.
import * as tfjs from '@tensorflow/tfjs';

export type Tf = typeof tfjs;

let loaded: Promise<{ tf: Tf; backend: string }> | null = null;

export function loadTf(preferNode = true): Promise<{ tf: Tf; backend: string }> {
  return (loaded ??= (async () => {
    if (preferNode) {
      // A variable specifier: tfjs-node is optional and absent from package.json on purpose.
      const name = '@tensorflow/tfjs-node';
      const node = (await import(name).catch(() => null)) as Tf | null;
      if (node) return { tf: node, backend: node.getBackend() };
    }
    await tfjs.setBackend('cpu');
    await tfjs.ready();
    return { tf: tfjs, backend: tfjs.getBackend() };
  })());
}
