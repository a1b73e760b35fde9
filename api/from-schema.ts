// The TypeScript type of a value a CRD's OpenAPI v3 schema accepts, computed from the schema object
// (declared `as const`), so a field added to api/schema.ts appears in api/types.ts with no second edit.
// Only the subset our CRDs use: string, integer, boolean, enum, array, object with properties /
// additionalProperties, and Kubernetes' int-or-string and preserve-unknown-fields. A property is required
// when the schema lists it in `required` or gives it a `default` (the apiserver fills it in).

declare const tsType: unique symbol;

/** A schema node whose TypeScript type is pinned to T (a shared Kubernetes shape); adds no key at run time. */
export type Pinned<S, T> = S & { readonly [tsType]?: T };

/** The type of the values schema S accepts. */
export type FromSchema<S> = S extends { readonly [tsType]?: infer T }
  ? unknown extends T
    ? Unpinned<S>
    : T
  : Unpinned<S>;

type Unpinned<S> = S extends { 'x-kubernetes-int-or-string': true }
  ? string | number
  : S extends { enum: readonly (infer E)[] }
    ? E
    : S extends { type: 'string' }
      ? string
      : S extends { type: 'integer' | 'number' }
        ? number
        : S extends { type: 'boolean' }
          ? boolean
          : S extends { type: 'array'; items: infer I }
            ? FromSchema<I>[]
            : S extends { type: 'object' }
              ? ObjectOf<S>
              : unknown;

type ObjectOf<S> = S extends { properties: infer P }
  ? S extends { 'x-kubernetes-preserve-unknown-fields': true }
    ? Props<P, RequiredKeys<S, P>> & { [field: string]: unknown }
    : Props<P, RequiredKeys<S, P>>
  : S extends { additionalProperties: infer A }
    ? Record<string, FromSchema<A>>
    : Record<string, unknown>;

type RequiredKeys<S, P> =
  | (S extends { required: readonly (infer R)[] } ? R : never)
  | { [K in keyof P]: P[K] extends { default: unknown } ? K : never }[keyof P];

type Props<P, R> = Flat<
  { -readonly [K in keyof P as K extends R ? K : never]-?: FromSchema<P[K]> } & {
    -readonly [K in keyof P as K extends R ? never : K]?: FromSchema<P[K]>;
  }
>;

type Flat<T> = { [K in keyof T]: T[K] };
