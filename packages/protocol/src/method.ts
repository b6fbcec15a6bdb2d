import type { z } from 'zod';

/**
 * One JSON-RPC method, declared once as a value. The daemon registers handlers by this
 * value and the client calls by it, so a method name is never typed twice.
 */
export interface MethodDescriptor<Name extends string, P extends z.ZodType, R extends z.ZodType> {
  readonly name: Name;
  readonly summary: string;
  readonly params: P;
  readonly result: R;
  /** True for the methods that change the system or the store. */
  readonly mutates: boolean;
}

export function defineMethod<Name extends string, P extends z.ZodType, R extends z.ZodType>(
  name: Name,
  spec: { summary: string; params: P; result: R; mutates?: boolean },
): MethodDescriptor<Name, P, R> {
  return { name, summary: spec.summary, params: spec.params, result: spec.result, mutates: spec.mutates ?? false };
}

/** The params type a method takes (input side of its schema). */
export type ParamsOf<M> = M extends MethodDescriptor<string, infer P, z.ZodType> ? z.input<P> : never;
/** The result type a method answers with. */
export type ResultOf<M> = M extends MethodDescriptor<string, z.ZodType, infer R> ? z.output<R> : never;
