/**
 * Why a handshake failed: browsers hide the HTTP status of a refused
 * WebSocket handshake, so the SDK asks the same URL over plain HTTP (the
 * Worker answers with the same checks, or 426 when the credentials are good).
 */
export type Answer =
  /** The Worker could not be reached (network, DNS, TLS, or a cross-origin read the browser blocked). */
  | { kind: "unreachable"; message: string }
  | { kind: "answered"; status: number; code?: string; message?: string }
  /** No fetch in this runtime. */
  | { kind: "unknown" };

export async function askWhy(doFetch: typeof fetch | undefined, url: string, token: string): Promise<Answer> {
  if (!doFetch) return { kind: "unknown" };
  try {
    const res = await doFetch(url, { headers: { authorization: `Bearer ${token}` } });
    const body = res.status >= 400 ? ((await res.json().catch(() => ({}))) as { error?: { code?: string; message?: string } }) : {};
    return { kind: "answered", status: res.status, code: body.error?.code, message: body.error?.message };
  } catch (err) {
    return { kind: "unreachable", message: (err as Error).message };
  }
}
