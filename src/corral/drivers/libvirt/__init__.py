"""The libvirt (QEMU/KVM) hypervisor driver. Import ``LibvirtDriver`` from ``.driver``; this package
stays light so that importing it does not load libvirt-python."""
