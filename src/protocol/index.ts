// The client-side RFC 6455 codec, one concern per file.
export * from "./constants.ts";
export * from "./close-codes.ts";
export * from "./handshake.ts";
export * from "./mask.ts";
export * from "./frame.ts";
export * from "./parser.ts";
export * from "./deflate.ts";
export * from "./utf8.ts";
export * from "./stamp.ts";
