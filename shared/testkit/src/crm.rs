//! CRM for tests: a client carrying a token, a guest profile to create, and creating it the way
//! a client does (with a fresh request id).

use guestloop_kit::client::AuthedChannel;
use guestloop_proto::crm::v1 as pb;
use guestloop_proto::crm::v1::crm_service_client::CrmServiceClient;

use crate::{TestService, TokenBuilder};

pub type Crm = CrmServiceClient<AuthedChannel>;

/// A CRM client of `service` with the token `builder` mints.
pub async fn crm_as(service: &TestService, builder: TokenBuilder) -> anyhow::Result<Crm> {
    Ok(CrmServiceClient::new(
        service.channel_with_token(&builder.mint()?).await?,
    ))
}

/// A profile with a name and contact details (empty for none), nothing else.
pub fn guest(given: &str, family: &str, email: &str, phone: &str) -> pb::Guest {
    pb::Guest {
        given_name: given.into(),
        family_name: family.into(),
        email: email.into(),
        phone: phone.into(),
        ..Default::default()
    }
}

/// Creates `g` under a fresh request id and answers the stored profile.
pub async fn create_guest(client: &mut Crm, g: pb::Guest) -> anyhow::Result<pb::Guest> {
    Ok(client
        .create_guest(pb::CreateGuestRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            guest: Some(g),
        })
        .await?
        .into_inner())
}
