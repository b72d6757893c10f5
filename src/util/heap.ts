// One compacting collection of this thread's V8 heap, for the moment a process has finished its
// start-up work (ADR 0067).
//
// Listing 100,000 ApiKeys allocates several times what the index and caches keep; V8 collects
// the garbage as it goes, but leaves the old generation's pages half empty, and it compacts and
// returns them only in a collection that aims to reduce memory, which an idle process may not
// get for minutes. Such a collection is what V8's inspector runs for HeapProfiler.collectGarbage:
// every full collection it takes to free what can be freed, the pages compacted, the young
// generation shrunk. An in-process inspector session asks for it; it opens no port and is closed
// at once.
import { Session } from "node:inspector/promises";

/**
 * Collects and compacts this thread's heap; resolves once it is done. False when it could not be
 * asked for (a Node without its inspector): the heap is then left as it is, which is only a matter
 * of memory. Nothing else may run on the thread meanwhile: at 100,000 keys it takes about 0.1 s.
 */
export async function compactHeap(): Promise<boolean> {
  if (!process.features.inspector) return false;
  const session = new Session();
  try {
    session.connect();
    await session.post("HeapProfiler.collectGarbage");
    return true;
  } catch {
    return false;
  } finally {
    session.disconnect();
  }
}
