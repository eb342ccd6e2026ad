package org.crac.management;

import java.lang.management.ManagementFactory;
import java.lang.management.PlatformManagedObject;
import java.lang.reflect.Method;
import javax.management.ObjectName;
import org.crac.CheckpointException;
import org.crac.Core;
import org.crac.RestoreException;

/**
 * Stand-in for org.crac 1.5's CRaCMXBean (see org.crac.Resource). As published, its
 * getCRaCMXBean() tolerates only the JDK's interface being absent: it asks
 * ManagementFactory.getPlatformMXBean for jdk.crac.management.CRaCMXBean and lets an
 * IllegalArgumentException ("not a platform management interface") escape, which is what
 * broke Spring Boot 3.2+ on a JDK whose CRaCMXBean was not a platform MXBean.
 */
public interface CRaCMXBean extends PlatformManagedObject {
    long getUptimeSinceRestore();

    long getRestoreTime();

    boolean isImplemented();

    void checkpointRestore() throws CheckpointException, RestoreException;

    @SuppressWarnings("unchecked")
    static CRaCMXBean getCRaCMXBean() {
        Class<?> iface;
        try {
            iface = Class.forName("jdk.crac.management.CRaCMXBean");
        } catch (ClassNotFoundException e) {
            return null;
        }
        PlatformManagedObject impl = ManagementFactory.getPlatformMXBean(
                (Class<? extends PlatformManagedObject>) iface);
        if (impl == null) {
            return null;
        }
        try {
            Method uptime = iface.getMethod("getUptimeSinceRestore");
            Method restoreTime = iface.getMethod("getRestoreTime");
            Method checkpoint;
            try {
                checkpoint = iface.getMethod("checkpointRestore");
            } catch (NoSuchMethodException e) {
                checkpoint = null;
            }
            Method cr = checkpoint;
            return new CRaCMXBean() {
                @Override
                public long getUptimeSinceRestore() {
                    try {
                        return (long) uptime.invoke(impl);
                    } catch (ReflectiveOperationException e) {
                        return -1;
                    }
                }

                @Override
                public long getRestoreTime() {
                    try {
                        return (long) restoreTime.invoke(impl);
                    } catch (ReflectiveOperationException e) {
                        return -1;
                    }
                }

                @Override
                public boolean isImplemented() {
                    return true;
                }

                @SuppressWarnings("deprecation")
                @Override
                public void checkpointRestore() throws CheckpointException, RestoreException {
                    if (cr == null) {
                        Core.checkpointRestore();
                    } else {
                        Core.IMPL.invokeCheckpoint(cr, impl);
                    }
                }

                @Override
                public ObjectName getObjectName() {
                    return impl.getObjectName();
                }
            };
        } catch (NoSuchMethodException e) {
            return null;
        }
    }
}
