use crate::call::string_enum;

string_enum! {
    /// A user's role in an organization. An API key acts as ADMIN.
    Role { Owner => "OWNER", Admin => "ADMIN", Member => "MEMBER" }
}

impl Role {
    /// OWNER > ADMIN > MEMBER.
    pub const fn rank(self) -> u8 {
        match self {
            Role::Owner => 3,
            Role::Admin => 2,
            Role::Member => 1,
        }
    }

    pub const fn at_least(self, required: Role) -> bool {
        self.rank() >= required.rank()
    }
}
