// TensorFlow.js loader: @tensorflow/tfjs-node when it is installed (the production image: native
// kernels), else the pure JS CPU backend, which installs and runs offline.
//
// Without tfjs-node only the parts the model uses are loaded: tfjs-core (tensors, io, training),
// tfjs-layers (the MLP) and the CPU backend — not the umbrella @tensorflow/tfjs, which also loads
// the converter, tfjs-data and the WebGL backend (~33 MB more RSS at rest, measured). They are the
// umbrella's own dependencies (same versions, same module instances), merged into one namespace
// of the umbrella's type.
import type * as tfjs from '@tensorflow/tfjs';

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
    const [core, layers] = await Promise.all([import('@tensorflow/tfjs-core'), import('@tensorflow/tfjs-layers')]);
    await import('@tensorflow/tfjs-backend-cpu');
    const tf = { ...core, ...layers } as unknown as Tf;
    await tf.setBackend('cpu');
    await tf.ready();
    return { tf, backend: tf.getBackend() };
  })());
}
