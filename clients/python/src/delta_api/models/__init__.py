"""Contains all the data models used in inputs/outputs"""

from .account_view import AccountView
from .accounts import Accounts
from .add_member_request import AddMemberRequest
from .admitted import Admitted
from .agent import Agent
from .agent_budget import AgentBudget
from .agent_grants import AgentGrants
from .agent_message import AgentMessage
from .api_key_view import ApiKeyView
from .approve import Approve
from .artifact_ref import ArtifactRef
from .attempt import Attempt
from .attempt_started import AttemptStarted
from .audit_entry import AuditEntry
from .audit_entry_detail import AuditEntryDetail
from .bounty import Bounty
from .bounty_event import BountyEvent
from .bounty_spec import BountySpec
from .catch_up_name import CatchUpName
from .channel import Channel
from .claim import Claim
from .claim_request import ClaimRequest
from .component import Component
from .create_agent import CreateAgent
from .create_api_key_request import CreateApiKeyRequest
from .create_api_key_request_scopes_type_0_item import (
    CreateApiKeyRequestScopesType0Item,
)
from .create_run import CreateRun
from .create_schedule import CreateSchedule
from .create_template import CreateTemplate
from .create_template_variables import CreateTemplateVariables
from .create_tenant_request import CreateTenantRequest
from .create_workflow import CreateWorkflow
from .created_api_key import CreatedApiKey
from .created_endpoint import CreatedEndpoint
from .credential_info import CredentialInfo
from .definition import Definition
from .definition_output_type_0 import DefinitionOutputType0
from .delivery import Delivery
from .deployment import Deployment
from .deployment_limits import DeploymentLimits
from .endpoint import Endpoint
from .enrolment import Enrolment
from .error import Error
from .event_receipt import EventReceipt
from .event_type import EventType
from .fire import Fire
from .heartbeat import Heartbeat
from .heartbeat_ack import HeartbeatAck
from .hook_accepted import HookAccepted
from .http_grant import HttpGrant
from .invitation_view import InvitationView
from .invited_view import InvitedView
from .issued_credential import IssuedCredential
from .kind import Kind
from .kv_key import KvKey
from .kv_key_page import KvKeyPage
from .kv_value import KvValue
from .kv_written import KvWritten
from .lease import Lease
from .lease_ask import LeaseAsk
from .lease_give_back import LeaseGiveBack
from .lease_list import LeaseList
from .lease_return import LeaseReturn
from .lease_view import LeaseView
from .limits import Limits
from .log_event import LogEvent
from .login_request import LoginRequest
from .me_response import MeResponse
from .member_view import MemberView
from .message_admission import MessageAdmission
from .message_record import MessageRecord
from .message_sent import MessageSent
from .new_bounty import NewBounty
from .new_bounty_spec import NewBountySpec
from .new_endpoint import NewEndpoint
from .new_submission import NewSubmission
from .new_submission_payload import NewSubmissionPayload
from .new_token_request import NewTokenRequest
from .node import Node
from .node_budget import NodeBudget
from .node_change import NodeChange
from .node_kv_deleted import NodeKvDeleted
from .node_kv_entry import NodeKvEntry
from .node_kv_got import NodeKvGot
from .node_kv_key import NodeKvKey
from .node_kv_list import NodeKvList
from .node_kv_page import NodeKvPage
from .node_kv_set import NodeKvSet
from .node_loss import NodeLoss
from .node_message import NodeMessage
from .node_token_ask import NodeTokenAsk
from .node_token_request import NodeTokenRequest
from .node_url import NodeUrl
from .node_usage_report import NodeUsageReport
from .node_usage_report_records_item import NodeUsageReportRecordsItem
from .page_agent import PageAgent
from .page_agent_items_item import PageAgentItemsItem
from .page_agent_message import PageAgentMessage
from .page_agent_message_items_item import PageAgentMessageItemsItem
from .page_api_key_view import PageApiKeyView
from .page_api_key_view_items_item import PageApiKeyViewItemsItem
from .page_audit_entry import PageAuditEntry
from .page_audit_entry_items_item import PageAuditEntryItemsItem
from .page_audit_entry_items_item_detail import PageAuditEntryItemsItemDetail
from .page_bounty import PageBounty
from .page_bounty_items_item import PageBountyItemsItem
from .page_bounty_items_item_spec import PageBountyItemsItemSpec
from .page_claim import PageClaim
from .page_claim_items_item import PageClaimItemsItem
from .page_component import PageComponent
from .page_component_items_item import PageComponentItemsItem
from .page_credential_info import PageCredentialInfo
from .page_credential_info_items_item import PageCredentialInfoItemsItem
from .page_delivery import PageDelivery
from .page_delivery_items_item import PageDeliveryItemsItem
from .page_deployment import PageDeployment
from .page_deployment_items_item import PageDeploymentItemsItem
from .page_deployment_items_item_limits import PageDeploymentItemsItemLimits
from .page_endpoint import PageEndpoint
from .page_endpoint_items_item import PageEndpointItemsItem
from .page_fire import PageFire
from .page_fire_items_item import PageFireItemsItem
from .page_invitation_view import PageInvitationView
from .page_invitation_view_items_item import PageInvitationViewItemsItem
from .page_member_view import PageMemberView
from .page_member_view_items_item import PageMemberViewItemsItem
from .page_message_record import PageMessageRecord
from .page_message_record_items_item import PageMessageRecordItemsItem
from .page_node import PageNode
from .page_node_items_item import PageNodeItemsItem
from .page_reputation import PageReputation
from .page_reputation_items_item import PageReputationItemsItem
from .page_run import PageRun
from .page_run_items_item import PageRunItemsItem
from .page_run_items_item_logs_type_0_item import PageRunItemsItemLogsType0Item
from .page_run_items_item_outcome_type_0 import PageRunItemsItemOutcomeType0
from .page_run_items_item_usage_type_0 import PageRunItemsItemUsageType0
from .page_schedule import PageSchedule
from .page_schedule_items_item import PageScheduleItemsItem
from .page_submission import PageSubmission
from .page_submission_items_item import PageSubmissionItemsItem
from .page_submission_items_item_payload import PageSubmissionItemsItemPayload
from .page_submission_items_item_report import PageSubmissionItemsItemReport
from .page_template import PageTemplate
from .page_template_items_item import PageTemplateItemsItem
from .page_template_items_item_variables import PageTemplateItemsItemVariables
from .page_tenant_view import PageTenantView
from .page_tenant_view_items_item import PageTenantViewItemsItem
from .page_token_request import PageTokenRequest
from .page_token_request_items_item import PageTokenRequestItemsItem
from .page_webhook import PageWebhook
from .page_webhook_items_item import PageWebhookItemsItem
from .page_workflow import PageWorkflow
from .page_workflow_items_item import PageWorkflowItemsItem
from .page_workflow_run import PageWorkflowRun
from .page_workflow_run_items_item import PageWorkflowRunItemsItem
from .page_workflow_run_items_item_input import PageWorkflowRunItemsItemInput
from .page_workflow_run_items_item_output_type_0 import (
    PageWorkflowRunItemsItemOutputType0,
)
from .patch_schedule import PatchSchedule
from .payment import Payment
from .policy import Policy
from .put_kv import PutKv
from .put_secret import PutSecret
from .quota_change import QuotaChange
from .quota_limits import QuotaLimits
from .reason import Reason
from .recipients import Recipients
from .refresh_request import RefreshRequest
from .register_request import RegisterRequest
from .register_response import RegisterResponse
from .reject import Reject
from .reputation import Reputation
from .resolve_secrets import ResolveSecrets
from .resolved_secrets import ResolvedSecrets
from .resolved_secrets_values import ResolvedSecretsValues
from .role import Role
from .role_request import RoleRequest
from .rotation import Rotation
from .run import Run
from .run_accepted import RunAccepted
from .run_logs_type_0_item import RunLogsType0Item
from .run_outcome_type_0 import RunOutcomeType0
from .run_trigger import RunTrigger
from .run_usage_type_0 import RunUsageType0
from .schedule import Schedule
from .secret_info import SecretInfo
from .secret_page import SecretPage
from .set_agent_budget import SetAgentBudget
from .set_recipients import SetRecipients
from .set_tier import SetTier
from .set_tier_tier import SetTierTier
from .start_workflow import StartWorkflow
from .start_workflow_input import StartWorkflowInput
from .step import Step
from .step_input_type_0 import StepInputType0
from .step_state import StepState
from .step_state_output_type_0 import StepStateOutputType0
from .stripe_webhook_body import StripeWebhookBody
from .submission import Submission
from .submission_payload import SubmissionPayload
from .submission_report import SubmissionReport
from .template import Template
from .template_status import TemplateStatus
from .template_variables import TemplateVariables
from .tenant_quotas import TenantQuotas
from .tenant_ref import TenantRef
from .tenant_view import TenantView
from .token_request import TokenRequest
from .token_response import TokenResponse
from .top_up import TopUp
from .totals import Totals
from .unreturned_lease import UnreturnedLease
from .unreturned_leases import UnreturnedLeases
from .update_agent import UpdateAgent
from .update_template import UpdateTemplate
from .update_template_variables_type_0 import UpdateTemplateVariablesType0
from .usage_ack import UsageAck
from .usage_report import UsageReport
from .usage_report_budget_type_0 import UsageReportBudgetType0
from .usage_row import UsageRow
from .user_budget import UserBudget
from .user_view import UserView
from .verification_sent import VerificationSent
from .verifier_limits import VerifierLimits
from .verify_email import VerifyEmail
from .webhook import Webhook
from .webhook_with_secret import WebhookWithSecret
from .workflow import Workflow
from .workflow_run import WorkflowRun
from .workflow_run_input import WorkflowRunInput
from .workflow_run_output_type_0 import WorkflowRunOutputType0

__all__ = (
    "Accounts",
    "AccountView",
    "AddMemberRequest",
    "Admitted",
    "Agent",
    "AgentBudget",
    "AgentGrants",
    "AgentMessage",
    "ApiKeyView",
    "Approve",
    "ArtifactRef",
    "Attempt",
    "AttemptStarted",
    "AuditEntry",
    "AuditEntryDetail",
    "Bounty",
    "BountyEvent",
    "BountySpec",
    "CatchUpName",
    "Channel",
    "Claim",
    "ClaimRequest",
    "Component",
    "CreateAgent",
    "CreateApiKeyRequest",
    "CreateApiKeyRequestScopesType0Item",
    "CreatedApiKey",
    "CreatedEndpoint",
    "CreateRun",
    "CreateSchedule",
    "CreateTemplate",
    "CreateTemplateVariables",
    "CreateTenantRequest",
    "CreateWorkflow",
    "CredentialInfo",
    "Definition",
    "DefinitionOutputType0",
    "Delivery",
    "Deployment",
    "DeploymentLimits",
    "Endpoint",
    "Enrolment",
    "Error",
    "EventReceipt",
    "EventType",
    "Fire",
    "Heartbeat",
    "HeartbeatAck",
    "HookAccepted",
    "HttpGrant",
    "InvitationView",
    "InvitedView",
    "IssuedCredential",
    "Kind",
    "KvKey",
    "KvKeyPage",
    "KvValue",
    "KvWritten",
    "Lease",
    "LeaseAsk",
    "LeaseGiveBack",
    "LeaseList",
    "LeaseReturn",
    "LeaseView",
    "Limits",
    "LogEvent",
    "LoginRequest",
    "MemberView",
    "MeResponse",
    "MessageAdmission",
    "MessageRecord",
    "MessageSent",
    "NewBounty",
    "NewBountySpec",
    "NewEndpoint",
    "NewSubmission",
    "NewSubmissionPayload",
    "NewTokenRequest",
    "Node",
    "NodeBudget",
    "NodeChange",
    "NodeKvDeleted",
    "NodeKvEntry",
    "NodeKvGot",
    "NodeKvKey",
    "NodeKvList",
    "NodeKvPage",
    "NodeKvSet",
    "NodeLoss",
    "NodeMessage",
    "NodeTokenAsk",
    "NodeTokenRequest",
    "NodeUrl",
    "NodeUsageReport",
    "NodeUsageReportRecordsItem",
    "PageAgent",
    "PageAgentItemsItem",
    "PageAgentMessage",
    "PageAgentMessageItemsItem",
    "PageApiKeyView",
    "PageApiKeyViewItemsItem",
    "PageAuditEntry",
    "PageAuditEntryItemsItem",
    "PageAuditEntryItemsItemDetail",
    "PageBounty",
    "PageBountyItemsItem",
    "PageBountyItemsItemSpec",
    "PageClaim",
    "PageClaimItemsItem",
    "PageComponent",
    "PageComponentItemsItem",
    "PageCredentialInfo",
    "PageCredentialInfoItemsItem",
    "PageDelivery",
    "PageDeliveryItemsItem",
    "PageDeployment",
    "PageDeploymentItemsItem",
    "PageDeploymentItemsItemLimits",
    "PageEndpoint",
    "PageEndpointItemsItem",
    "PageFire",
    "PageFireItemsItem",
    "PageInvitationView",
    "PageInvitationViewItemsItem",
    "PageMemberView",
    "PageMemberViewItemsItem",
    "PageMessageRecord",
    "PageMessageRecordItemsItem",
    "PageNode",
    "PageNodeItemsItem",
    "PageReputation",
    "PageReputationItemsItem",
    "PageRun",
    "PageRunItemsItem",
    "PageRunItemsItemLogsType0Item",
    "PageRunItemsItemOutcomeType0",
    "PageRunItemsItemUsageType0",
    "PageSchedule",
    "PageScheduleItemsItem",
    "PageSubmission",
    "PageSubmissionItemsItem",
    "PageSubmissionItemsItemPayload",
    "PageSubmissionItemsItemReport",
    "PageTemplate",
    "PageTemplateItemsItem",
    "PageTemplateItemsItemVariables",
    "PageTenantView",
    "PageTenantViewItemsItem",
    "PageTokenRequest",
    "PageTokenRequestItemsItem",
    "PageWebhook",
    "PageWebhookItemsItem",
    "PageWorkflow",
    "PageWorkflowItemsItem",
    "PageWorkflowRun",
    "PageWorkflowRunItemsItem",
    "PageWorkflowRunItemsItemInput",
    "PageWorkflowRunItemsItemOutputType0",
    "PatchSchedule",
    "Payment",
    "Policy",
    "PutKv",
    "PutSecret",
    "QuotaChange",
    "QuotaLimits",
    "Reason",
    "Recipients",
    "RefreshRequest",
    "RegisterRequest",
    "RegisterResponse",
    "Reject",
    "Reputation",
    "ResolvedSecrets",
    "ResolvedSecretsValues",
    "ResolveSecrets",
    "Role",
    "RoleRequest",
    "Rotation",
    "Run",
    "RunAccepted",
    "RunLogsType0Item",
    "RunOutcomeType0",
    "RunTrigger",
    "RunUsageType0",
    "Schedule",
    "SecretInfo",
    "SecretPage",
    "SetAgentBudget",
    "SetRecipients",
    "SetTier",
    "SetTierTier",
    "StartWorkflow",
    "StartWorkflowInput",
    "Step",
    "StepInputType0",
    "StepState",
    "StepStateOutputType0",
    "StripeWebhookBody",
    "Submission",
    "SubmissionPayload",
    "SubmissionReport",
    "Template",
    "TemplateStatus",
    "TemplateVariables",
    "TenantQuotas",
    "TenantRef",
    "TenantView",
    "TokenRequest",
    "TokenResponse",
    "TopUp",
    "Totals",
    "UnreturnedLease",
    "UnreturnedLeases",
    "UpdateAgent",
    "UpdateTemplate",
    "UpdateTemplateVariablesType0",
    "UsageAck",
    "UsageReport",
    "UsageReportBudgetType0",
    "UsageRow",
    "UserBudget",
    "UserView",
    "VerificationSent",
    "VerifierLimits",
    "VerifyEmail",
    "Webhook",
    "WebhookWithSecret",
    "Workflow",
    "WorkflowRun",
    "WorkflowRunInput",
    "WorkflowRunOutputType0",
)
