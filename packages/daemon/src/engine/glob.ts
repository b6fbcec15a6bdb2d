/**
 * Turns a glob such as `mail.*` into a test: `*` any run of characters, `?` one, everything else itself. Linear in the
 * name's length times the glob's (no regex, so no catastrophic backtracking on hostile globs).
 */
export function globTest(glob: string): (name: string) => boolean {
  return (name) => {
    let g = 0;
    let n = 0;
    let star = -1;
    let mark = 0;
    while (n < name.length) {
      if (g < glob.length && (glob[g] === '?' || glob[g] === name[n])) {
        g++;
        n++;
      } else if (g < glob.length && glob[g] === '*') {
        star = g++;
        mark = n;
      } else if (star >= 0) {
        g = star + 1;
        n = ++mark;
      } else return false;
    }
    while (glob[g] === '*') g++;
    return g === glob.length;
  };
}
