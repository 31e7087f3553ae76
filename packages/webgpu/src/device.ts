/**
 * Getting a GPUDevice in a browser (navigator.gpu) or in Node (Dawn, via the `webgpu` package).
 */

/** What benchmarks print next to every figure, so a number is never mistaken for another device's. */
export interface AdapterInfo {
  vendor: string;
  architecture: string;
  description: string;
  /** The adapter says it is a fallback (software) one; false when the host does not tell. */
  isFallbackAdapter: boolean;
}

export interface AcquireOptions {
  /** Use this device instead of requesting one (the caller keeps owning its GPU instance). */
  device?: GPUDevice;
  powerPreference?: GPUPowerPreference;
  /** Dawn toggles for Node, e.g. ['backend=vulkan']. */
  dawnOptions?: string[];
}

/** No WebGPU adapter could be obtained; the message says why and what to install. */
export class WebGpuUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WebGpuUnavailableError';
  }
}

// Dawn destroys its instance when the object returned by create() is garbage-collected, even
// while devices from it are alive (then mapAsync crashes the process). Holding it here, for
// the life of the process, is the fix.
let dawnGpu: GPU | undefined;

async function nodeGpu(dawnOptions: string[]): Promise<GPU> {
  if (dawnGpu) return dawnGpu;
  let mod: { create(options: string[]): GPU; globals: object };
  try {
    // A variable specifier keeps bundlers from pulling the native module into browser builds.
    const name = 'webgpu';
    mod = (await import(name)) as typeof mod;
  } catch (e) {
    throw new WebGpuUnavailableError(
      `webgpu: no navigator.gpu and the 'webgpu' package (Dawn for Node) could not be loaded: ` +
        `${(e as Error).message}. Install it with 'npm install webgpu', or use the CPU backend.`,
    );
  }
  // WebGPU constants (GPUBufferUsage, GPUMapMode, ...) must exist as globals; keep any the
  // host already defines.
  for (const [k, v] of Object.entries(mod.globals)) {
    if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
  }
  dawnGpu = mod.create(dawnOptions);
  return dawnGpu;
}

const NO_ADAPTER_HELP =
  'webgpu: no WebGPU adapter found. In Node, WebGPU runs on Dawn over Vulkan and needs a Vulkan ' +
  'driver: install your GPU vendor\'s driver and the Vulkan loader (libvulkan1), or, without a GPU, ' +
  "Mesa's lavapipe — on Debian 12 from bookworm-backports " +
  '(apt-get install -t bookworm-backports mesa-vulkan-drivers libvulkan1; Debian 12\'s own Mesa is ' +
  'too old for Dawn). In a browser, enable WebGPU (Chrome: --enable-unsafe-webgpu). ' +
  'The CPU backend (createCpuBackend) works everywhere.';

export interface Acquired {
  device: GPUDevice;
  adapterInfo: AdapterInfo;
  /** Whether this module created the device (and so should destroy it). */
  owned: boolean;
}

function infoOf(info: GPUAdapterInfo | undefined, adapter?: GPUAdapter): AdapterInfo {
  // Newer hosts report isFallbackAdapter on the info, older ones on the adapter.
  const fallback = (info as { isFallbackAdapter?: boolean } | undefined)?.isFallbackAdapter ??
    (adapter as { isFallbackAdapter?: boolean } | undefined)?.isFallbackAdapter;
  return {
    vendor: info?.vendor ?? '',
    architecture: info?.architecture ?? '',
    description: info?.description ?? '',
    isFallbackAdapter: fallback === true,
  };
}

export async function acquireDevice(options: AcquireOptions = {}): Promise<Acquired> {
  if (options.device) {
    const device = options.device;
    const info = (device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo;
    return { device, adapterInfo: infoOf(info), owned: false };
  }
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  const gpu = nav?.gpu ?? (await nodeGpu(options.dawnOptions ?? []));
  const adapterOptions: GPURequestAdapterOptions = {};
  if (options.powerPreference) adapterOptions.powerPreference = options.powerPreference;
  let adapter: GPUAdapter | null;
  try {
    adapter = await gpu.requestAdapter(adapterOptions);
  } catch (e) {
    throw new WebGpuUnavailableError(`${NO_ADAPTER_HELP} (requestAdapter failed: ${(e as Error).message})`);
  }
  if (!adapter) throw new WebGpuUnavailableError(NO_ADAPTER_HELP);
  // Defaults cap storage bindings at 128 MiB; ask for what the adapter really has so large
  // weight matrices fit in one binding.
  const lim = adapter.limits;
  const device = await adapter.requestDevice({
    requiredLimits: {
      maxStorageBufferBindingSize: lim.maxStorageBufferBindingSize,
      maxBufferSize: lim.maxBufferSize,
      maxComputeWorkgroupStorageSize: lim.maxComputeWorkgroupStorageSize,
      maxStorageBuffersPerShaderStage: lim.maxStorageBuffersPerShaderStage,
    },
  });
  return { device, adapterInfo: infoOf(adapter.info, adapter), owned: true };
}
