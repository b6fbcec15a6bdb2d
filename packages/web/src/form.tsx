/**
 * A form generated from a scope's value schema: one labelled control per field, fieldsets for
 * objects, lists and maps with Add and Remove buttons, a select for a union. The daemon's
 * messages show under the field their issue's path names (see placeErrors).
 */
import { useState } from 'preact/hooks';
import { type Json, type Schema, choicesOf, emptyValue, isAnyJson, resolve, variantIndex, variantLabel, variantsOf } from './schema.js';

/** What every field of one form shares. */
export interface FormContext {
  root: Schema;
  /** Field names whose value is a secret: typed into password inputs, never prefilled. */
  secrets: ReadonlySet<string>;
  /** Messages by field path (`a/b/0`, '' for the whole value). */
  errors: ReadonlyMap<string, string[]>;
  /** Filled while rendering: the paths that have a field, for placeErrors. */
  paths: Set<string>;
  disabled: boolean;
}

interface FieldProps {
  ctx: FormContext;
  schema: Schema;
  value: Json | undefined;
  path: (string | number)[];
  label: string;
  onChange: (v: Json | undefined) => void;
}

const keyOf = (path: (string | number)[]) => path.join('/');
const idOf = (path: (string | number)[]) => `f-${path.length === 0 ? 'value' : path.map((p) => String(p).replace(/[^A-Za-z0-9_-]/g, '_')).join('-')}`;

/**
 * Where each issue shows: under the deepest field its path reaches; issues whose path names no
 * field (or none at all) show at the whole value's field.
 */
export function placeErrors(issues: { path: (string | number)[]; message: string }[], paths: ReadonlySet<string>): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const issue of issues) {
    let p = issue.path.map(String);
    while (p.length > 0 && !paths.has(keyOf(p))) p = p.slice(0, -1);
    const k = keyOf(p);
    out.set(k, [...(out.get(k) ?? []), issue.message]);
  }
  return out;
}

function FieldError({ ctx, path }: { ctx: FormContext; path: (string | number)[] }) {
  const messages = ctx.errors.get(keyOf(path));
  if (messages === undefined) return null;
  return (
    <p class="error field-error" id={`${idOf(path)}-error`}>
      {messages.join('; ')}
    </p>
  );
}

/** The ARIA attributes that tie a control to its error message. */
function invalid(ctx: FormContext, path: (string | number)[]) {
  return ctx.errors.has(keyOf(path)) ? { 'aria-invalid': true as const, 'aria-describedby': `${idOf(path)}-error` } : {};
}

export function Field(props: FieldProps) {
  const { ctx, path } = props;
  ctx.paths.add(keyOf(path));
  const schema = resolve(props.schema, ctx.root);
  if (isAnyJson(schema, ctx.root)) return <JsonField {...props} schema={schema} />;
  if (choicesOf(schema) !== undefined) return <ChoiceField {...props} schema={schema} />;
  if (variantsOf(schema) !== undefined) return <UnionField {...props} schema={schema} />;
  switch (schema.type) {
    case 'object':
      return schema.properties !== undefined ? <ObjectField {...props} schema={schema} /> : <MapField {...props} schema={schema} />;
    case 'array':
      return <ListField {...props} schema={schema} />;
    case 'boolean':
      return <BooleanField {...props} />;
    case 'number':
    case 'integer':
      return <NumberField {...props} />;
    default:
      return <TextField {...props} />;
  }
}

function TextField({ ctx, value, path, label, onChange }: FieldProps) {
  const id = idOf(path);
  const secret = ctx.secrets.has(String(path.at(-1) ?? ''));
  return (
    <div class="field">
      <label for={id}>{label}</label>
      <input
        id={id}
        type={secret ? 'password' : 'text'}
        autocomplete={secret ? 'new-password' : 'off'}
        spellcheck={false}
        value={typeof value === 'string' ? value : ''}
        disabled={ctx.disabled}
        onInput={(e) => onChange(e.currentTarget.value)}
        {...invalid(ctx, path)}
      />
      {secret && <p class="hint">Stored secrets are never shown: type it to set it.</p>}
      <FieldError ctx={ctx} path={path} />
    </div>
  );
}

function NumberField({ ctx, value, path, label, onChange }: FieldProps) {
  const id = idOf(path);
  return (
    <div class="field">
      <label for={id}>{label}</label>
      <input
        id={id}
        type="number"
        value={typeof value === 'number' ? String(value) : ''}
        disabled={ctx.disabled}
        onInput={(e) => onChange(e.currentTarget.value === '' ? undefined : Number(e.currentTarget.value))}
        {...invalid(ctx, path)}
      />
      <FieldError ctx={ctx} path={path} />
    </div>
  );
}

function BooleanField({ ctx, value, path, label, onChange }: FieldProps) {
  const id = idOf(path);
  return (
    <div class="field field-check">
      <input
        id={id}
        type="checkbox"
        checked={value === true}
        disabled={ctx.disabled}
        onChange={(e) => onChange(e.currentTarget.checked)}
        {...invalid(ctx, path)}
      />
      <label for={id}>{label}</label>
      <FieldError ctx={ctx} path={path} />
    </div>
  );
}

/** Enum strings and constants (such as `spamassassin | rspamd | false`) as one select. */
function ChoiceField({ ctx, schema, value, path, label, onChange }: FieldProps) {
  const id = idOf(path);
  const choices = choicesOf(schema)!;
  const at = Math.max(choices.indexOf(value), 0);
  return (
    <div class="field">
      <label for={id}>{label}</label>
      <select
        id={id}
        value={String(at)}
        disabled={ctx.disabled}
        onChange={(e) => onChange(choices[Number(e.currentTarget.value)] as Json)}
        {...invalid(ctx, path)}
      >
        {choices.map((c, i) => (
          <option key={String(i)} value={String(i)}>
            {typeof c === 'string' ? c : JSON.stringify(c)}
          </option>
        ))}
      </select>
      <FieldError ctx={ctx} path={path} />
    </div>
  );
}

/** A union such as `false | {host, username, password}`: a select of the variants, then the chosen one's fields. */
function UnionField({ ctx, schema, value, path, label, onChange }: FieldProps) {
  const id = `${idOf(path)}-kind`;
  const variants = variantsOf(schema)!;
  const at = variantIndex(variants, value, ctx.root);
  const chosen = resolve(variants[at]!, ctx.root);
  const constant = 'const' in chosen;
  return (
    <div class="field union">
      <label for={id}>{label}</label>
      <select
        id={id}
        value={String(at)}
        disabled={ctx.disabled}
        onChange={(e) => onChange(emptyValue(variants[Number(e.currentTarget.value)]!, ctx.root))}
        {...invalid(ctx, path)}
      >
        {variants.map((v, i) => (
          <option key={String(i)} value={String(i)}>
            {variantLabel(v, ctx.root)}
          </option>
        ))}
      </select>
      <FieldError ctx={ctx} path={path} />
      {!constant && <FieldBody ctx={ctx} schema={chosen} value={value} path={path} label={`${label} settings`} onChange={onChange} />}
    </div>
  );
}

/** The chosen variant's own fields, without registering its path again or repeating its error. */
function FieldBody(props: FieldProps) {
  const errors = new Map(props.ctx.errors);
  errors.delete(keyOf(props.path));
  return <Field {...props} ctx={{ ...props.ctx, errors }} />;
}

function ObjectField({ ctx, schema, value, path, label, onChange }: FieldProps) {
  const o = (typeof value === 'object' && value !== null && !Array.isArray(value) ? value : {}) as Record<string, Json>;
  const required = new Set(schema.required ?? []);
  const set = (k: string, v: Json | undefined) => {
    const next = { ...o };
    if (v === undefined || (v === '' && !required.has(k))) delete next[k];
    else next[k] = v;
    onChange(next);
  };
  return (
    <fieldset id={idOf(path)} {...invalid(ctx, path)}>
      <legend>{label}</legend>
      <FieldError ctx={ctx} path={path} />
      {Object.entries(schema.properties!).map(([k, s]) => (
        <Field key={k} ctx={ctx} schema={s} value={o[k]} path={[...path, k]} label={required.has(k) ? k : `${k} (optional)`} onChange={(v) => set(k, v)} />
      ))}
    </fieldset>
  );
}

function ListField({ ctx, schema, value, path, label, onChange }: FieldProps) {
  const items = Array.isArray(value) ? value : [];
  const item = schema.items ?? {};
  return (
    <fieldset id={idOf(path)} {...invalid(ctx, path)}>
      <legend>{label}</legend>
      <FieldError ctx={ctx} path={path} />
      {items.map((x, i) => (
        <div class="row" key={String(i)}>
          <Field
            ctx={ctx}
            schema={item}
            value={x}
            path={[...path, i]}
            label={`${label} ${i + 1}`}
            onChange={(v) => onChange(items.map((y, j) => (j === i ? (v ?? null) : y)))}
          />
          <button type="button" class="secondary" disabled={ctx.disabled} onClick={() => onChange(items.filter((_, j) => j !== i))}>
            Remove {label} {i + 1}
          </button>
        </div>
      ))}
      <button type="button" class="secondary" disabled={ctx.disabled} onClick={() => onChange([...items, emptyValue(item, ctx.root)])}>
        Add to {label}
      </button>
    </fieldset>
  );
}

/** A map (an object of any keys): rows of a key and its value. */
function MapField({ ctx, schema, value, path, label, onChange }: FieldProps) {
  const entries = Object.entries((typeof value === 'object' && value !== null && !Array.isArray(value) ? value : {}) as Record<string, Json>);
  const item = typeof schema.additionalProperties === 'object' ? schema.additionalProperties : {};
  const rebuild = (rows: [string, Json][]) => onChange(Object.fromEntries(rows));
  return (
    <fieldset id={idOf(path)} {...invalid(ctx, path)}>
      <legend>{label}</legend>
      <FieldError ctx={ctx} path={path} />
      {entries.map(([k, x], i) => {
        const keyId = `${idOf(path)}-key-${i}`;
        return (
          <div class="row" key={String(i)}>
            <div class="field">
              <label for={keyId}>Key {i + 1}</label>
              <input
                id={keyId}
                type="text"
                value={k}
                disabled={ctx.disabled}
                onInput={(e) => rebuild(entries.map(([kk, vv], j) => [j === i ? e.currentTarget.value : kk, vv]))}
              />
            </div>
            <Field
              ctx={ctx}
              schema={item}
              value={x}
              path={[...path, k]}
              label={`Value of ${k || `key ${i + 1}`}`}
              onChange={(v) => rebuild(entries.map(([kk, vv], j) => [kk, j === i ? (v ?? null) : vv]))}
            />
            <button type="button" class="secondary" disabled={ctx.disabled} onClick={() => rebuild(entries.filter((_, j) => j !== i))}>
              Remove {k || `key ${i + 1}`}
            </button>
          </div>
        );
      })}
      <button type="button" class="secondary" disabled={ctx.disabled} onClick={() => rebuild([...entries, ['', emptyValue(item, ctx.root)]])}>
        Add to {label}
      </button>
    </fieldset>
  );
}

/** Any JSON value, typed as JSON text; the value changes only while the text parses. */
function JsonField({ ctx, value, path, label, onChange }: FieldProps) {
  const id = idOf(path);
  const [text, setText] = useState(value === undefined ? '' : JSON.stringify(value));
  const [bad, setBad] = useState(false);
  return (
    <div class="field">
      <label for={id}>{label} (JSON)</label>
      <textarea
        id={id}
        rows={3}
        spellcheck={false}
        value={text}
        disabled={ctx.disabled}
        onInput={(e) => {
          const t = e.currentTarget.value;
          setText(t);
          try {
            onChange(JSON.parse(t) as Json);
            setBad(false);
          } catch {
            setBad(true);
          }
        }}
        {...invalid(ctx, path)}
      />
      {bad && <p class="hint">Not valid JSON yet: strings need "quotes".</p>}
      <FieldError ctx={ctx} path={path} />
    </div>
  );
}
