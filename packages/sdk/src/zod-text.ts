import { z } from 'zod';

/**
 * A union's "Invalid input" says nothing: where its branches gave reasons in their own words
 * (custom issues, such as "the hostname contains whitespace"), those stand in for it.
 */
function ownWords(issues: readonly z.core.$ZodIssue[], at: PropertyKey[] = []): z.core.$ZodIssue[] {
  return issues.flatMap((i) => {
    const path = [...at, ...i.path];
    if (i.code === 'invalid_union') {
      const custom = i.errors.flat().filter((b) => b.code === 'custom');
      if (custom.length) return ownWords(custom, path);
    }
    return [{ ...i, path }];
  });
}

/**
 * A zod failure as one line for a message: z.prettifyError's issues, each as `where: problem`
 * (the field first, so the reader sees what to fix), joined by `; `. `root` names the whole
 * value for an issue about it (`config: ...`); without it such an issue is the problem alone.
 */
export function zodText(error: z.ZodError, root?: string): string {
  const out: string[] = [];
  const pretty = z.prettifyError(new z.ZodError(ownWords(error.issues)));
  for (const line of pretty.split('\n')) {
    if (line.startsWith('✖ ')) out.push(root === undefined ? line.slice(2) : `${root}: ${line.slice(2)}`);
    else if (line.startsWith('  → at ') && out.length) out.push(`${line.slice(7)}: ${root === undefined ? out.pop() : out.pop()!.slice(root.length + 2)}`);
    else if (out.length) out.push(`${out.pop()} ${line.trim()}`);
  }
  return out.join('; ');
}
