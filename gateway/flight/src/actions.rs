//! Flight actions beyond the Flight SQL commands: session options (set, get, close) and
//! cancelling a query by its FlightInfo, dispatched by type in [`SluiceSqlService::action`].

use std::collections::HashMap;

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::{Any, Command};
use arrow_flight::{
    Action, ActionType, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightInfo,
};
use prost::Message;
use tonic::Response;

use crate::client_state::QueryTicket;
use crate::error::{Error, Result};
use crate::service::{Caller, SluiceSqlService};
use crate::session_options::{
    CANCEL_FLIGHT_INFO, CLOSE_SESSION, CloseSessionResult, CloseSessionStatus, ErrorValue,
    GET_SESSION_OPTIONS, GetSessionOptionsResult, SET_SESSION_OPTIONS, SessionOptionValue,
    SetSessionOptionError, SetSessionOptionsRequest, SetSessionOptionsResult,
};

type DoActionStream = <SluiceSqlService as FlightService>::DoActionStream;

/// The custom actions, as ListActions lists them.
pub(crate) fn custom_actions() -> Vec<ActionType> {
    [
        (
            SET_SESSION_OPTIONS,
            "Set session options (DataFusion settings).",
        ),
        (GET_SESSION_OPTIONS, "Get the session's options."),
        (CLOSE_SESSION, "Close the session and its token."),
        (CANCEL_FLIGHT_INFO, "Cancel a query by its FlightInfo."),
    ]
    .into_iter()
    .map(|(name, description)| ActionType {
        r#type: name.to_string(),
        description: description.to_string(),
    })
    .collect()
}

fn one_result(body: impl Message) -> Response<DoActionStream> {
    let result = arrow_flight::Result {
        body: body.encode_to_vec().into(),
    };
    Response::new(Box::pin(futures::stream::iter([Ok(result)])))
}

fn decode<M: Message + Default>(action: &Action) -> Result<M> {
    M::decode(&*action.body).map_err(|e| Error::InvalidRequest(format!("{}: {e}", action.r#type)))
}

impl SluiceSqlService {
    /// Answers one of [`custom_actions`].
    pub(crate) fn action(
        &self,
        caller: &Caller,
        action: Action,
    ) -> Result<Response<DoActionStream>> {
        match action.r#type.as_str() {
            SET_SESSION_OPTIONS => {
                let request = decode(&action)?;
                Ok(one_result(self.set_session_options(caller, request)))
            }
            GET_SESSION_OPTIONS => Ok(one_result(self.session_options(caller)?)),
            CLOSE_SESSION => {
                self.sessions.close(caller.session_key());
                self.auth.close_session(&caller.session);
                Ok(one_result(CloseSessionResult {
                    status: CloseSessionStatus::Closed as i32,
                }))
            }
            CANCEL_FLIGHT_INFO => {
                let request: CancelFlightInfoRequest = decode(&action)?;
                let status = if request.info.iter().any(|i| self.cancel(i)) {
                    CancelStatus::Cancelled
                } else {
                    CancelStatus::NotCancellable
                };
                Ok(one_result(CancelFlightInfoResult::new(status)))
            }
            other => Err(Error::Unsupported(format!("unknown action '{other}'"))),
        }
    }

    /// Cancels the queries of `info`'s endpoints; whether one was running.
    pub(crate) fn cancel(&self, info: &FlightInfo) -> bool {
        info.endpoint
            .iter()
            .filter_map(|e| e.ticket.as_ref())
            .any(|t| self.cancel_ticket(&t.ticket))
    }

    fn cancel_ticket(&self, ticket: &[u8]) -> bool {
        let Ok(any) = Any::decode(ticket) else {
            return false;
        };
        match Command::try_from(any) {
            // Only the replica running the query can stop it.
            Ok(Command::TicketStatementQuery(t)) => {
                QueryTicket::open_any(self.auth.sealer(), &t.statement_handle)
                    .is_some_and(|t| self.sessions.cancel(&t.id))
            }
            _ => false,
        }
    }

    fn session_options(&self, caller: &Caller) -> Result<GetSessionOptionsResult> {
        let mut options: HashMap<String, SessionOptionValue> = self
            .settings(caller)?
            .iter()
            .map(|(k, v)| (k.to_string(), SessionOptionValue::string(v)))
            .collect();
        options.insert(
            "catalog".into(),
            SessionOptionValue::string(sluice_catalog::CATALOG),
        );
        options.insert(
            "schema".into(),
            SessionOptionValue::string(sluice_catalog::SCHEMA),
        );
        Ok(GetSessionOptionsResult {
            session_options: options,
        })
    }

    fn set_session_options(
        &self,
        caller: &Caller,
        request: SetSessionOptionsRequest,
    ) -> SetSessionOptionsResult {
        let mut errors = HashMap::new();
        for (name, value) in request.session_options {
            let error = match (name.as_str(), value.as_setting()) {
                (_, None) => Some(ErrorValue::InvalidValue),
                ("catalog", Some(v)) => {
                    (v != sluice_catalog::CATALOG).then_some(ErrorValue::InvalidValue)
                }
                ("schema", Some(v)) => {
                    (v != sluice_catalog::SCHEMA).then_some(ErrorValue::InvalidValue)
                }
                (_, Some(v)) => match self.apply_setting(caller, &name, &v) {
                    Ok(()) => None,
                    Err(Error::Query(sluice_planner::Error::UnknownSetting { .. })) => {
                        Some(ErrorValue::InvalidName)
                    }
                    Err(_) => Some(ErrorValue::InvalidValue),
                },
            };
            if let Some(e) = error {
                errors.insert(name, SetSessionOptionError { value: e as i32 });
            }
        }
        SetSessionOptionsResult { errors }
    }
}
