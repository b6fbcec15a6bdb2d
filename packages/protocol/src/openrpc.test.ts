import jsonSchemaMeta from '@json-schema-tools/meta-schema';
import metaSchema from '@open-rpc/meta-schema';
import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { ErrorCodes } from './errors.js';
import { methods } from './methods.js';
import { buildOpenRpc } from './openrpc.js';

describe('rpc.discover document', () => {
  const doc = buildOpenRpc(methods, '0.0.0-test');

  it('is valid against the OpenRPC meta-schema', () => {
    const ajv = new Ajv({ strict: false, validateSchema: false });
    // The OpenRPC meta-schema refers to the JSON Schema meta-schema with and without a trailing slash.
    const { $id: _id, ...meta } = jsonSchemaMeta as Record<string, unknown>;
    ajv.addSchema(meta, 'https://meta.json-schema.tools');
    ajv.addSchema(meta, 'https://meta.json-schema.tools/');
    const validate = ajv.compile(metaSchema as object);
    const ok = validate(doc);
    expect(validate.errors ?? []).toEqual([]);
    expect(ok).toBe(true);
    // The validator does reject a broken document.
    expect(validate({ ...doc, methods: [{ name: 'x', params: 'none' }] })).toBe(false);
  });

  it('describes every method by name with JSON Schemas of its params and result', () => {
    const listed = doc.methods as { name: string; params: { name: string; required: boolean }[]; result: { schema: object } }[];
    expect(listed.map((m) => m.name).sort()).toEqual(methods.map((m) => m.name).sort());
    const set = listed.find((m) => m.name === 'scope.set')!;
    expect(set.params.find((p) => p.name === 'name')).toMatchObject({ required: true });
    expect(set.params.find((p) => p.name === 'dryRun')).toMatchObject({ required: false });
    // Applied at once, or queued as a job with async: true.
    const variants = (set.result.schema as { anyOf: { properties: Record<string, unknown> }[] }).anyOf;
    expect(variants.map((v) => Object.keys(v.properties).sort())).toEqual([
      expect.arrayContaining(['status', 'plan', 'revision', 'name', 'value']),
      ['job', 'status'],
    ]);
  });

  it("documents every error code, and every code is JSON-RPC's or in the domain range", () => {
    const errors = (doc.components as { errors: Record<string, { code: number; message: string }> }).errors;
    expect(Object.keys(errors)).toEqual(Object.keys(ErrorCodes));
    for (const e of Object.values(errors)) {
      expect(e.message.length).toBeGreaterThan(5);
      expect([-32700, -32600, -32601, -32602, -32603].includes(e.code) || (e.code >= -32099 && e.code <= -32000)).toBe(true);
    }
  });
});
