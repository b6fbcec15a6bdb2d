import { z } from 'zod';
import { ErrorCodes, ErrorDescriptions, type ErrorCodeName } from './errors.js';
import type { MethodDescriptor } from './method.js';

type JsonSchema = Record<string, unknown>;

const schemaOf = (s: z.ZodType, io: 'input' | 'output'): JsonSchema => {
  const { $schema: _drop, ...rest } = z.toJSONSchema(s, { io, unrepresentable: 'any' }) as JsonSchema;
  return rest;
};

/**
 * The OpenRPC document of a set of methods, built from their zod schemas: params by name,
 * each a content descriptor with its JSON Schema; results likewise; the error table as
 * components.
 */
export function buildOpenRpc(methods: readonly MethodDescriptor<string, z.ZodType, z.ZodType>[], version: string): JsonSchema {
  return {
    openrpc: '1.2.6',
    info: {
      title: 'scoped',
      version,
      description: "A mail server's configuration as typed scopes. Params go by name. Domain errors are -32000..-32099.",
    },
    methods: methods.map((m) => {
      const shape = m.params instanceof z.ZodObject ? (m.params.shape as Record<string, z.ZodType>) : {};
      return {
        name: m.name,
        summary: m.summary,
        paramStructure: 'by-name',
        params: Object.entries(shape).map(([name, s]) => ({ name, required: !s.safeParse(undefined).success, schema: schemaOf(s, 'input') })),
        result: { name: `${m.name}.result`, schema: schemaOf(m.result, 'output') },
        ...(m.mutates ? { tags: [{ name: 'mutates' }] } : {}),
      };
    }),
    components: {
      errors: Object.fromEntries(
        (Object.keys(ErrorCodes) as ErrorCodeName[]).map((name) => [name, { code: ErrorCodes[name], message: ErrorDescriptions[name] }]),
      ),
    },
  };
}
