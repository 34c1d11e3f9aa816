// WWW-Authenticate parsing (RFC 7235 auth-params), as registries send it:
//   Bearer realm="https://auth.example/token",service="registry",scope="repository:a/b:pull"
export interface Challenge { scheme: string; params: Record<string, string> }

export function parseChallenges(header: string | string[] | undefined): Challenge[] {
  if (!header) return [];
  const text = Array.isArray(header) ? header.join(", ") : header;
  const out: Challenge[] = [];
  let i = 0;
  const n = text.length;
  const skipWs = () => { while (i < n && (text[i] === " " || text[i] === "\t" || text[i] === ",")) i++; };
  const readToken = () => { const s = i; while (i < n && /[A-Za-z0-9!#$%&'*+.^_`|~-]/.test(text[i]!)) i++; return text.slice(s, i); };
  while (i < n) {
    skipWs();
    const scheme = readToken();
    if (!scheme) { i++; continue; }
    const ch: Challenge = { scheme: scheme.toLowerCase(), params: {} };
    out.push(ch);
    for (;;) {
      while (i < n && (text[i] === " " || text[i] === "\t")) i++;
      const save = i;
      const name = readToken();
      while (i < n && text[i] === " ") i++;
      if (!name || text[i] !== "=") { i = save; break; }
      i++;
      while (i < n && text[i] === " ") i++;
      let value = "";
      if (text[i] === '"') {
        i++;
        while (i < n && text[i] !== '"') { if (text[i] === "\\" && i + 1 < n) i++; value += text[i]; i++; }
        i++;
      } else value = readToken();
      ch.params[name.toLowerCase()] = value;
      while (i < n && (text[i] === " " || text[i] === "\t")) i++;
      if (text[i] === ",") {
        // A comma followed by "token =" continues params; "token SP" starts a new challenge.
        const j = i + 1;
        const rest = text.slice(j).trimStart();
        const m = /^([A-Za-z0-9!#$%&'*+.^_`|~-]+)\s*=/.exec(rest);
        if (m) { i = j; continue; }
        break;
      }
      break;
    }
  }
  return out;
}
