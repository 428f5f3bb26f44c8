//! Generated code for the Guestloop contracts (`proto/guestloop/<area>/v1`), one module per package,
//! plus the encoded file descriptor set that every server registers for gRPC reflection.

/// Encoded `FileDescriptorSet` of every Guestloop contract (for `tonic-reflection`).
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("guestloop_descriptor");

pub mod common {
    #[allow(clippy::all)]
    pub mod v1 {
        tonic::include_proto!("guestloop.common.v1");
    }
}
pub mod complaints {
    #[allow(clippy::all)]
    pub mod v1 {
        tonic::include_proto!("guestloop.complaints.v1");
    }
}
pub mod crm {
    #[allow(clippy::all)]
    pub mod v1 {
        tonic::include_proto!("guestloop.crm.v1");
    }
}
pub mod facilities {
    #[allow(clippy::all)]
    pub mod v1 {
        tonic::include_proto!("guestloop.facilities.v1");
    }
}
pub mod audit {
    #[allow(clippy::all)]
    pub mod v1 {
        tonic::include_proto!("guestloop.audit.v1");
    }
}
mod complaint_kpis;

pub mod gateway {
    #[allow(clippy::all)]
    pub mod v1 {
        tonic::include_proto!("guestloop.gateway.v1");
    }
}
