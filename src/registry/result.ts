/** The answer to "does this manifest exist, as an OCI image?" */
export type LookupResult =
  | { readonly kind: "exists"; readonly mediaType: string; readonly digest?: string }
  | { readonly kind: "absent"; readonly reason: string }
  | { readonly kind: "unknown"; readonly reason: string };

export const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
export const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
export const DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json";
export const DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json";
export const MANIFEST_ACCEPT = [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST].join(", ");
export const OCI_MEDIA_TYPES: ReadonlySet<string> = new Set([OCI_INDEX, OCI_MANIFEST]);
