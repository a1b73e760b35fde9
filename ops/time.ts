/** Now in the apiserver's time format (RFC 3339, whole seconds), as metav1.Time serializes. */
export function rfc3339Now(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
}
