// Which ServingRuntime serves a model: KServe's selection rules as a pure function.
import type { ModelFormat, ServingRuntimeSpec, SupportedModelFormat } from '../api/kserve.ts';

export interface RuntimeRequest {
  format: ModelFormat;
  /** v1 when not set. */
  protocolVersion?: string;
  multiModel: boolean;
  /** A runtime named in the predictor: it need not be autoSelect, but it must still fit. */
  runtimeName?: string;
}

export interface RuntimeCandidate {
  name: string;
  /** A namespaced ServingRuntime (else a ClusterServingRuntime). */
  namespaced: boolean;
  spec: ServingRuntimeSpec;
}

export interface SelectedRuntime extends RuntimeCandidate {
  /** The supported format that matched. */
  format: SupportedModelFormat;
}

/** "1" matches "1", "1.2" and "1.2.3"; unset on either side matches anything. */
function versionMatches(runtime: string | undefined, model: string | undefined): boolean {
  if (!model || !runtime) return true;
  return runtime === model || model.startsWith(`${runtime}.`) || runtime.startsWith(`${model}.`);
}

export function supportsFormat(f: SupportedModelFormat, format: ModelFormat): boolean {
  return f.name.toLowerCase() === format.name.toLowerCase() && versionMatches(f.version, format.version);
}

/**
 * Runtimes that can serve the request, best first: not disabled, the model format (and version)
 * supported with autoSelect (unless the runtime is named), the protocol version, multiModel equal
 * to the request's; sorted by the format's priority (higher first), namespaced before cluster-scoped
 * at equal priority, then by name.
 */
export function selectRuntimes(req: RuntimeRequest, candidates: readonly RuntimeCandidate[]): SelectedRuntime[] {
  const protocol = req.protocolVersion ?? 'v1';
  const out: SelectedRuntime[] = [];
  for (const c of candidates) {
    if (req.runtimeName !== undefined && c.name !== req.runtimeName) continue;
    if (c.spec.disabled) continue;
    if (Boolean(c.spec.multiModel) !== req.multiModel) continue;
    if (!(c.spec.protocolVersions?.length ? c.spec.protocolVersions : ['v1']).includes(protocol)) continue;
    const format = (c.spec.supportedModelFormats ?? []).find(
      (f) => supportsFormat(f, req.format) && (req.runtimeName !== undefined || f.autoSelect === true),
    );
    if (format) out.push({ ...c, format });
  }
  return out.sort(
    (a, b) =>
      (b.format.priority ?? 0) - (a.format.priority ?? 0) ||
      Number(b.namespaced) - Number(a.namespaced) ||
      (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
  );
}
