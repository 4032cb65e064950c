// The WIT `error` variant as JavaScript exceptions: throw one from a command or projection.

export class Error extends globalThis.Error {
  constructor(message) {
    super(message);
    this.name = new.target.name;
  }
  /** The WIT variant case. */
  get kind() {
    return "store";
  }
}

export class Rejected extends Error {
  get kind() {
    return "rejected";
  }
}

export class InvalidInput extends Error {
  get kind() {
    return "invalid-input";
  }
}

export class Conflict extends Error {
  get kind() {
    return "conflict";
  }
}

export class NotFound extends Error {
  get kind() {
    return "not-found";
  }
}

export class StoreError extends Error {
  get kind() {
    return "store";
  }
}

export const BY_KIND = {
  rejected: Rejected,
  "invalid-input": InvalidInput,
  conflict: Conflict,
  "not-found": NotFound,
  store: StoreError,
};

export function unknown(what, name, known) {
  return new NotFound(`unknown ${what} \`${name}\` (this slice has: ${[...known].join(", ")})`);
}
