import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Hook } from '@oclif/core';
import { commands, globalFlags } from '../specs.js';

/** The commands whose first argument is a scope NAME, from their declarations. */
export const scopeNameCommands = (): string[] => commands.filter((c) => !c.hidden && c.args[0]?.completion === 'scope').map((c) => c.id);

/** The global flags that take the next word as their value, which completion must skip. */
const valueFlags = Object.entries(globalFlags)
  .filter(([, f]) => f.type !== 'boolean')
  .flatMap(([n, f]) => [`--${n}`, ...(f.char ? [`-${f.char}`] : [])]);

const MARK = '# scope names (added by cpcmd)';

/**
 * Bash: a function in front of the plugin's. On the first argument of a command taking a
 * scope NAME it offers `cpcmd autocomplete:scopes` (the daemon's names, else the ones written
 * at build); anywhere else it hands over to the plugin's function (commands and flags).
 * It reads COMP_LINE itself, so `scope:get` stays one word and flags before the command are skipped.
 */
export function bashScopeCompletion(bin: string): string {
  const fn = `_${bin}_autocomplete`;
  return `
${MARK}
${fn}_scopes()
{
  local line="\${COMP_LINE:0:COMP_POINT}" cmd="" n=0 i
  local -a words pass
  read -ra words <<< "$line"
  [[ -z "$line" || "$line" == *[[:space:]] ]] && words+=("")
  local last="\${words[\${#words[@]}-1]}"
  for (( i = 1; i < \${#words[@]} - 1; i++ )); do
    case "\${words[i]}" in
      ${valueFlags.filter((f) => f !== '-o' && f !== '--output').join('|')}) pass+=("\${words[i]}" "\${words[i+1]}"); (( i++ )) ;;
      ${valueFlags.filter((f) => f === '-o' || f === '--output').join('|')}) (( i++ )) ;;
      --) break ;;
      -*) ;;
      *) if [[ -z "$cmd" ]]; then cmd="\${words[i]}"; else (( n++ )); fi ;;
    esac
  done
  if [[ "$last" != -* && -n "$cmd" && $n -eq 0 ]]; then
    case "$cmd" in
      ${scopeNameCommands().join('|')})
        local IFS=$'\\n'
        COMPREPLY=( $(compgen -W "$("\${words[0]}" autocomplete:scopes "\${pass[@]}" 2>/dev/null)" -- "$last") )
        return 0 ;;
    esac
  fi
  ${fn}
}
complete -o default -F ${fn}_scopes ${bin}
`;
}

/** Zsh: the first argument of a command taking a scope NAME completes scope names instead of files. */
export function zshScopeCompletion(bin: string): string {
  return `${MARK}
_${bin}_scope_args () {
  case \${words[2]} in
    ${scopeNameCommands().join('|')})
      if [ $CURRENT -eq 3 ]; then
        local -a _scopes
        _scopes=(\${(f)"$(\${words[1]} autocomplete:scopes 2>/dev/null)"})
        compadd -a _scopes
        return
      fi
      ;;
  esac
  _path_files
}
`;
}

/** The plugin's commands that write the completion functions: `cpcmd autocomplete [SHELL]` runs the hidden autocomplete:create. */
const WRITERS = new Set(['autocomplete', 'autocomplete:create']);

/** After @oclif/plugin-autocomplete writes its bash and zsh functions, add scope-name completion to them. */
const hook: Hook<'postrun'> = async function (opts) {
  if (!WRITERS.has(opts.Command?.id ?? '')) return;
  const { bin, cacheDir } = opts.config;
  const dir = path.join(cacheDir, 'autocomplete', 'functions');
  const bash = path.join(dir, 'bash', `${bin}.bash`);
  const current = await readFile(bash, 'utf8');
  if (!current.includes(MARK)) await writeFile(bash, current + bashScopeCompletion(bin));
  const zsh = path.join(dir, 'zsh', `_${bin}`);
  const z = await readFile(zsh, 'utf8');
  if (!z.includes(MARK)) {
    const body = z.replace(/^(\s*)_path_files$/m, `$1_${bin}_scope_args`);
    if (body === z) this.warn('cpcmd: the zsh completion of @oclif/plugin-autocomplete changed shape; scope names are not completed in zsh');
    const lines = body.split('\n');
    // After the #compdef line, so the helper is defined when zsh autoloads the file.
    await writeFile(zsh, [lines[0], zshScopeCompletion(bin), ...lines.slice(1)].join('\n'));
  }
};

export default hook;
