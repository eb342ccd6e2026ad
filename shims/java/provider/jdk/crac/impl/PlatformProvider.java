package jdk.crac.impl;

import java.util.List;
import java.util.Map;
import java.util.Set;
import jdk.crac.management.CRaCMXBean;
import sun.management.spi.PlatformMBeanProvider;

/**
 * Makes {@link CRaCMXBean} a platform MXBean on a stock JDK: java.management loads providers
 * of this service from the class path (our jar is on the boot class path), once crac-java
 * has exported sun.management.spi to it.
 */
public final class PlatformProvider extends PlatformMBeanProvider {
    @Override
    public List<PlatformComponent<?>> getPlatformComponentList() {
        return List.of(new PlatformComponent<CRaCMXBean>() {
            @Override
            public Set<Class<? extends CRaCMXBean>> mbeanInterfaces() {
                return Set.of(CRaCMXBean.class);
            }

            @Override
            public Set<String> mbeanInterfaceNames() {
                return Set.of(CRaCMXBean.class.getName());
            }

            @Override
            public String getObjectNamePattern() {
                return CRaCImpl.OBJECT_NAME;
            }

            @Override
            public Map<String, CRaCMXBean> nameToMBeanMap() {
                return Map.of(CRaCImpl.OBJECT_NAME, CRaCImpl.INSTANCE);
            }
        });
    }
}
