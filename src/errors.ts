// Typed errors: every error apparate raises carries a stable code and the
// offending input, so callers can branch on `code` and messages can name the input.
export class ApparateError extends Error {
  readonly code: string;
  readonly input: unknown;
  constructor(code: string, message: string, input?: unknown, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.input = input;
  }
}
