//! The routes of the IMDS and container handlers, typed: each has a short fixed label for
//! logs and metrics, and the routes that reveal the role are named once.

/// What a request asked for, as far as the handler got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A listing.
    Index,
    /// `api/token`.
    Token,
    /// No valid token.
    Unauthorized,
    /// A `Host` or target that is not an IP literal or `localhost`.
    BadHost,
    /// `iam/info`.
    IamInfo,
    /// `iam/security-credentials/`.
    CredentialsList,
    /// `iam/security-credentials-extended/`.
    CredentialsExtendedList,
    /// `iam/security-credentials/ROLE`.
    Credentials,
    /// `iam/security-credentials-extended/ROLE`.
    CredentialsExtended,
    /// `instance-id`.
    InstanceId,
    /// `placement/region`.
    Region,
    /// `placement/availability-zone`.
    AvailabilityZone,
    /// `dynamic/instance-identity/document`.
    IdentityDocument,
    /// Anything under `meta-data/iam/`, refused to a caller outside the
    /// allow-list.
    IamRefused,
    /// Anything else.
    Other,
    /// The container endpoint's credentials.
    ContainerCredentials,
    /// The container endpoint: no valid consumer token, or a caller outside
    /// the allow-list.
    ContainerRefused,
}

impl Route {
    /// A short, fixed name for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Route::Index => "index",
            Route::Token => "token",
            Route::Unauthorized => "unauthorized",
            Route::BadHost => "bad-host",
            Route::IamInfo => "iam-info",
            Route::CredentialsList => "credentials-list",
            Route::CredentialsExtendedList => "credentials-extended-list",
            Route::Credentials => "credentials",
            Route::CredentialsExtended => "credentials-extended",
            Route::InstanceId => "instance-id",
            Route::Region => "region",
            Route::AvailabilityZone => "availability-zone",
            Route::IdentityDocument => "identity-document",
            Route::IamRefused => "iam-refused",
            Route::Other => "other",
            Route::ContainerCredentials => "container-credentials",
            Route::ContainerRefused => "container-refused",
        }
    }

    /// A route that names the role or returns its credentials.
    pub fn reveals_role(self) -> bool {
        matches!(
            self,
            Route::IamInfo
                | Route::CredentialsList
                | Route::CredentialsExtendedList
                | Route::Credentials
                | Route::CredentialsExtended
                | Route::ContainerCredentials
        )
    }
}
