// Names apparate writes on pods and reads from namespaces.
export const ANNOTATION_ORIGINAL_IMAGES = "apparate.io/original-images";
export const ANNOTATION_INJECT = "apparate.io/inject";
export const ANNOTATION_ACTIONS = "apparate.io/actions";
export const ANNOTATION_IMAGE_CACHE_MATCH = "apparate.io/image-cache-match";
export const ANNOTATION_USE_IMAGE_CACHE = "eks.tke.cloud.tencent.com/use-image-cache";
export const ANNOTATION_MIRROR_POD = "kubernetes.io/config.mirror";
/** Label on apparate's own pods; the webhook configuration's objectSelector excludes them. */
export const LABEL_COMPONENT = "app.kubernetes.io/part-of";
/** Pod label with the image-cache outcome; the event emitter watches pods by it. */
export const LABEL_IMAGE_CACHE = "apparate.io/image-cache";
