//! Envoy's pagination: `page` (1-based, default 1) and `page_size`
//! (default 20, at most 100), answered as `{data, pagination}`.

use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{Error, Result};
use crate::query::Params;

pub const DEFAULT_PAGE_SIZE: i64 = 20;
pub const MAX_PAGE_SIZE: i64 = 100;
/// The largest `page` (any larger is not an `i64`).
pub const MAX_PAGE: i64 = i64::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub page: i64,
    pub page_size: i64,
}

impl PageRequest {
    pub fn from_params(params: &Params) -> Result<Self> {
        let page = params.int("page")?.unwrap_or(1);
        if page < 1 {
            return Err(Error::validation("page", "must be 1 or greater"));
        }
        let page_size = params.int("page_size")?.unwrap_or(DEFAULT_PAGE_SIZE);
        if !(1..=MAX_PAGE_SIZE).contains(&page_size) {
            return Err(Error::validation(
                "page_size",
                format!("must be between 1 and {MAX_PAGE_SIZE}"),
            ));
        }
        Ok(Self { page, page_size })
    }

    pub fn offset(&self) -> i64 {
        (self.page - 1).saturating_mul(self.page_size)
    }

    pub fn page_of(&self, total_count: i64) -> Pagination {
        let total_pages = if total_count == 0 {
            0
        } else {
            (total_count + self.page_size - 1) / self.page_size
        };
        Pagination {
            page: self.page,
            page_size: self.page_size,
            total_count,
            total_pages,
            has_next: self.page < total_pages,
            has_prev: self.page > 1,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct Pagination {
    pub page: i64,
    pub page_size: i64,
    pub total_count: i64,
    pub total_pages: i64,
    pub has_next: bool,
    pub has_prev: bool,
}

/// A page of results.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Paginated<T: ToSchema> {
    pub data: Vec<T>,
    pub pagination: Pagination,
}
