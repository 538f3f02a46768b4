//! The caller's wallet (a user's or a merchant's): balances per currency, and the ledger
//! entries behind them.

use super::AppState;
use super::auth;
use super::error::{ApiError, ErrorBody};
use super::request::page_request;
use super::views::{AccountView, EntryView, ListView, WalletView};
use crate::domain::Currency;
use crate::store::accounts::Owner;
use actix_web::{HttpRequest, HttpResponse, web};
use std::collections::HashMap;

#[utoipa::path(get, path = "/v1/wallet", tag = "wallet", security(("bearer" = [])),
    responses((status = 200, body = WalletView), (status = 401, body = ErrorBody)))]
pub async fn get_wallet(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let owner = Owner::from(auth::current_principal(&request, &state).await?.party());
    let accounts = state.store.list_accounts(&owner).await?;
    Ok(HttpResponse::Ok().json(WalletView {
        object: "wallet",
        accounts: accounts.iter().map(AccountView::from).collect(),
    }))
}

#[utoipa::path(get, path = "/v1/wallet/entries", tag = "wallet", security(("bearer" = [])),
    params(
        ("currency" = Option<String>, Query, description = "Only entries of the account in this currency"),
        ("limit" = Option<u64>, Query, description = "1 to 100, default 10"),
        ("starting_after" = Option<String>, Query, description = "Cursor: an entry id"),
        ("ending_before" = Option<String>, Query, description = "Cursor: an entry id"),
    ),
    responses((status = 200, body = ListView<EntryView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list_entries(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let owner = Owner::from(auth::current_principal(&request, &state).await?.party());
    let page = page_request(&query)?;
    let currency = query
        .get("currency")
        .map(|code| Currency::parse(code).map_err(|r| ApiError::rejection(r, Some("currency"))))
        .transpose()?;
    let accounts: Vec<_> = state
        .store
        .list_accounts(&owner)
        .await?
        .into_iter()
        .filter(|account| currency.is_none_or(|currency| account.currency == currency))
        .collect();
    let currencies: HashMap<String, &'static str> = accounts
        .iter()
        .map(|account| (account.id.to_string(), account.currency.code()))
        .collect();
    let ids: Vec<_> = accounts.iter().map(|account| account.id).collect();
    let (entries, has_more) = if ids.is_empty() {
        (Vec::new(), false)
    } else {
        state.store.list_entries(&ids, &page).await?
    };
    let data = entries
        .iter()
        .map(|entry| {
            EntryView::new(
                entry,
                currencies
                    .get(&entry.account_id)
                    .copied()
                    .unwrap_or_default(),
            )
        })
        .collect();
    Ok(HttpResponse::Ok().json(ListView::new(data, has_more)))
}
