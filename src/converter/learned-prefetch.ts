// The converter's side of a learned prefetch list (src/kube/prefetch-list.ts): the list a
// node recorded for a repository, passed to the conversion as `--prefetch` would be. A list
// that cannot be read or is invalid is logged and ignored: the image still converts, without
// prefetch, as it did before any list was learned.
import type { PrefetchLists } from "../kube/prefetch-list.js";
import type { Logger } from "../observability/logger.js";
import type { PrefetchFor } from "./engine.js";

export function learnedPrefetch(lists: Pick<PrefetchLists, "read">, logger: Pick<Logger, "info" | "warn">): PrefetchFor {
  return async (repository) => {
    try {
      const list = await lists.read(repository);
      if (list) logger.info({ repository, paths: list.length }, "converting with the learned prefetch list");
      return list;
    } catch (err) {
      logger.warn({ repository, err: (err as Error).message }, "learned prefetch list ignored");
      return undefined;
    }
  };
}
