package jdk.crac.management;

import java.lang.management.PlatformManagedObject;
import javax.management.ObjectName;
import jdk.crac.impl.AgentLink;

/** Times of the last restore. */
public interface CRaCMXBean extends PlatformManagedObject {
    /** Milliseconds since the restore, or -1 if this JVM was not restored. */
    long getUptimeSinceRestore();

    /** Wall-clock time (ms since the epoch) at which the restore started, or -1. */
    long getRestoreTime();

    static CRaCMXBean getCRaCMXBean() {
        return Impl.INSTANCE;
    }

    /** The one instance. */
    final class Impl implements CRaCMXBean {
        static final Impl INSTANCE = new Impl();

        private Impl() {
        }

        @Override
        public long getUptimeSinceRestore() {
            long started = AgentLink.restoreNanos();
            return started < 0 ? -1 : (System.nanoTime() - started) / 1_000_000;
        }

        @Override
        public long getRestoreTime() {
            return AgentLink.restoreTime();
        }

        @Override
        public ObjectName getObjectName() {
            try {
                return new ObjectName("jdk.management:type=CRaC");
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
        }
    }
}
