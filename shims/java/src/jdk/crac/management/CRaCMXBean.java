package jdk.crac.management;

import java.lang.management.ManagementFactory;
import java.lang.management.PlatformManagedObject;
import jdk.crac.CheckpointException;
import jdk.crac.RestoreException;

/**
 * The JVM's checkpoint/restore, as a platform MXBean ({@code jdk.management:type=CRaC}).
 *
 * <p>crac-shim: crac-java registers it with the platform MBean server, so
 * {@code ManagementFactory.getPlatformMXBean(CRaCMXBean.class)} returns it, as on a CRaC JDK.
 */
public interface CRaCMXBean extends PlatformManagedObject {
    /** Milliseconds since the restore was started (CRIU's time included), or -1. */
    long getUptimeSinceRestore();

    /** When the restore was started, in milliseconds since the epoch, or -1. */
    long getRestoreTime();

    /** Checkpoints, and returns in the restored JVM; as {@code Core.checkpointRestore()}. */
    void checkpointRestore() throws CheckpointException, RestoreException;

    /** The platform instance. */
    static CRaCMXBean getCRaCMXBean() {
        try {
            return ManagementFactory.getPlatformMXBean(CRaCMXBean.class);
        } catch (IllegalArgumentException notRegistered) {
            // Started without crac-java's --add-exports (a plain java with the jar added by
            // hand): the same object, outside the platform MBean server.
            return jdk.crac.impl.CRaCImpl.INSTANCE;
        }
    }
}
