// UTF-8 TextEncoder/TextDecoder for engines without them (QuickJS), which the MessagePack
// codec needs; a no-op where they exist (SpiderMonkey in componentize-js, Node.js).

if (typeof globalThis.TextEncoder === "undefined") {
  globalThis.TextEncoder = class TextEncoder {
    get encoding() {
      return "utf-8";
    }
    encode(text = "") {
      const out = [];
      for (const char of String(text)) {
        let c = char.codePointAt(0);
        if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd; // a lone surrogate
        if (c < 0x80) out.push(c);
        else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
        else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
        else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
      }
      return new Uint8Array(out);
    }
    encodeInto(text, into) {
      const bytes = this.encode(text);
      into.set(bytes.subarray(0, into.length));
      return { read: String(text).length, written: Math.min(bytes.length, into.length) };
    }
  };
}

if (typeof globalThis.TextDecoder === "undefined") {
  globalThis.TextDecoder = class TextDecoder {
    get encoding() {
      return "utf-8";
    }
    decode(input = new Uint8Array()) {
      const bytes = input instanceof Uint8Array ? input : new Uint8Array(input.buffer ?? input);
      let out = "";
      for (let i = 0; i < bytes.length; ) {
        const b = bytes[i];
        const need = b < 0x80 ? 0 : b >= 0xf0 ? 3 : b >= 0xe0 ? 2 : b >= 0xc0 ? 1 : -1;
        let c = need === 0 ? b : need === 1 ? b & 31 : need === 2 ? b & 15 : b & 7;
        let ok = need >= 0 && i + need < bytes.length + (need === 0 ? 1 : 0);
        for (let k = 1; ok && k <= need; k++) {
          const next = bytes[i + k];
          if ((next & 0xc0) !== 0x80) ok = false;
          else c = (c << 6) | (next & 63);
        }
        if (!ok) {
          out += "\ufffd";
          i += 1;
          continue;
        }
        out += String.fromCodePoint(c);
        i += need + 1;
      }
      return out;
    }
  };
}
