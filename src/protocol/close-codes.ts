// RFC 6455 §7.4 close codes: which may appear on the wire, and what each means to a person reading a report.

const MEANINGS: Record<number, string> = {
  1000: "normal closure",
  1001: "going away (server shutting down or page left)",
  1002: "protocol error",
  1003: "unsupported data type",
  1005: "no status code in the close frame",
  1006: "abnormal closure: the TCP connection dropped without a close frame",
  1007: "invalid payload data (e.g. text that is not UTF-8)",
  1008: "policy violation",
  1009: "message too big",
  1010: "client expected an extension the server did not negotiate",
  1011: "server hit an unexpected condition",
  1012: "service restart",
  1013: "try again later (server overloaded)",
  1014: "bad gateway",
  1015: "TLS handshake failure",
};

export const CLOSE_NORMAL = 1000;
export const CLOSE_GOING_AWAY = 1001;
export const CLOSE_PROTOCOL_ERROR = 1002;
export const CLOSE_NO_STATUS = 1005;
export const CLOSE_ABNORMAL = 1006;
export const CLOSE_INVALID_PAYLOAD = 1007;
export const CLOSE_TOO_BIG = 1009;

/** A human explanation of a close code (registered, library, or private range). */
export function closeCodeMeaning(code: number): string {
  const known = MEANINGS[code];
  if (known) return known;
  if (code >= 3000 && code <= 3999) return "registered by a library or framework";
  if (code >= 4000 && code <= 4999) return "application-defined";
  return "not a valid close code";
}

/**
 * RFC 6455 §7.4.1/§7.4.2: codes that may be sent in a close frame. 1005, 1006 and 1015 are reserved for
 * local reporting and must never appear on the wire; 1016-2999 are unassigned.
 */
export function isValidWireCloseCode(code: number): boolean {
  return (
    (code >= 1000 && code <= 1003) ||
    (code >= 1007 && code <= 1014) ||
    (code >= 3000 && code <= 4999)
  );
}
