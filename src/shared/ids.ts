/** Branded identifiers: a ReplicaId cannot be passed where a collection name is expected. */

export type ReplicaId = string & { readonly __brand: 'ReplicaId' };
export type Seq = number & { readonly __brand: 'Seq' };
export type CollectionName = string & { readonly __brand: 'CollectionName' };
export type DocId = string & { readonly __brand: 'DocId' };
