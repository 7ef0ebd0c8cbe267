{{/*
Names, labels and the pieces every pod template shares. One template per object lives beside this file.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "cronwork.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name prefix of every object: fullnameOverride, or "<release>-<name>" unless the release name already
contains the chart name. Truncated to 63 characters (the DNS label limit) minus room for role suffixes.
*/}}
{{- define "cronwork.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "<chart>-<version>" for the helm.sh/chart label. */}}
{{- define "cronwork.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels of one role. Usage: include "cronwork.selectorLabels" (dict "ctx" $ "component" "api");
objects shared by every role leave out "component".
*/}}
{{- define "cronwork.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cronwork.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{/* Standard labels of an object. Usage: as cronwork.selectorLabels. */}}
{{- define "cronwork.labels" -}}
helm.sh/chart: {{ include "cronwork.chart" .ctx }}
{{ include "cronwork.selectorLabels" . }}
app.kubernetes.io/version: {{ (default .ctx.Chart.AppVersion .ctx.Values.image.tag) | trunc 63 | quote }}
app.kubernetes.io/part-of: {{ include "cronwork.name" .ctx }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
{{- end }}

{{/* The image reference: repository@digest when a digest is set, else repository:tag (tag defaults to appVersion). */}}
{{- define "cronwork.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The ServiceAccount of the api, worker and beat pods. */}}
{{- define "cronwork.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cronwork.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The ServiceAccount of the migration Job. A pre-install hook runs before the chart's own objects exist, so it
can only use a ServiceAccount that was there before the release.
*/}}
{{- define "cronwork.migrate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- "default" }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The Secret holding the credentials (cronwork.secretEnv): the user's existingSecret, or the one this chart creates.
The credentials are checked here, once, for every template that reads them.
*/}}
{{- define "cronwork.secretName" -}}
{{- if .Values.secrets.existingSecret }}
{{- with .Values.secrets }}
{{- if or .databaseUrl .brokerUrl .secretKeys .smtpPassword }}
{{- fail "secrets.databaseUrl, secrets.brokerUrl, secrets.secretKeys and secrets.smtpPassword must be empty when secrets.existingSecret is set: they are read from that Secret" }}
{{- end }}
{{- end }}
{{- .Values.secrets.existingSecret }}
{{- else }}
{{- if not (and .Values.secrets.databaseUrl .Values.secrets.brokerUrl) }}
{{- fail "set secrets.databaseUrl and secrets.brokerUrl, or name a Secret holding them with secrets.existingSecret" }}
{{- end }}
{{- include "cronwork.fullname" . }}
{{- end }}
{{- end }}

{{/*
The non-secret settings as environment variables (name: value), shared by the ConfigMap and the migration Job.
Nothing secret may ever be added here: the URLs, SECRET_KEYS and SMTP_PASSWORD come from the Secret
(cronwork.secretEnv). DEMO_TASK_TYPES is a boolean value, rendered as the "true" or "false" the services read.
*/}}
{{- define "cronwork.settings" -}}
PORT: {{ .Values.api.containerPort | quote }}
AUTH_MODE: {{ .Values.config.authMode | quote }}
AUTH_HEADER: {{ .Values.config.authHeader | quote }}
AUTH_GROUPS_HEADER: {{ .Values.config.authGroupsHeader | quote }}
AUTH_ADMIN_GROUPS: {{ .Values.config.authAdminGroups | quote }}
AUTH_OPERATOR_GROUPS: {{ .Values.config.authOperatorGroups | quote }}
AUTH_VIEWER_GROUPS: {{ .Values.config.authViewerGroups | quote }}
AUTH_DEFAULT_ROLE: {{ .Values.config.authDefaultRole | quote }}
OIDC_ISSUER: {{ .Values.config.oidcIssuer | quote }}
OIDC_AUDIENCE: {{ .Values.config.oidcAudience | quote }}
OIDC_JWKS_URL: {{ .Values.config.oidcJwksUrl | quote }}
OIDC_USERNAME_CLAIM: {{ .Values.config.oidcUsernameClaim | quote }}
OIDC_GROUPS_CLAIM: {{ .Values.config.oidcGroupsClaim | quote }}
{{- if eq .Values.config.authMode "dev" }}
MOCK_USER_EMAIL: {{ .Values.config.mockUserEmail | quote }}
MOCK_USER_ROLE: {{ .Values.config.mockUserRole | quote }}
{{- end }}
TICK_HORIZON_S: {{ .Values.config.tickHorizonS | quote }}
PUMP_GRACE_S: {{ .Values.config.pumpGraceS | quote }}
MISFIRE_GRACE_S: {{ .Values.config.misfireGraceS | quote }}
TICK_BUDGET: {{ .Values.config.tickBudget | quote }}
TICK_BUCKET_MS: {{ .Values.config.tickBucketMs | quote }}
HTTP_ALLOWED_NETWORKS: {{ .Values.config.httpAllowedNetworks | quote }}
SMTP_HOST: {{ .Values.config.smtpHost | quote }}
SMTP_PORT: {{ .Values.config.smtpPort | quote }}
SMTP_SECURITY: {{ .Values.config.smtpSecurity | quote }}
SMTP_USERNAME: {{ .Values.config.smtpUsername | quote }}
SMTP_FROM: {{ .Values.config.smtpFrom | quote }}
DEMO_TASK_TYPES: {{ .Values.config.demoTaskTypes | quote }}
SIMULATED_WORK_MS: {{ .Values.config.simulatedWorkMs | quote }}
HISTORY_RETENTION_DAYS: {{ .Values.config.historyRetentionDays | quote }}
BACKFILL_MAX_SLOTS: {{ .Values.config.backfillMaxSlots | quote }}
MAX_REQUEST_BYTES: {{ .Values.config.maxRequestBytes | int64 | quote }}
TASK_TIME_LIMIT_S: {{ .Values.config.taskTimeLimitS | quote }}
RUN_LEASE_MARGIN_S: {{ .Values.config.runLeaseMarginS | quote }}
RETRY_BASE_DELAY_MS: {{ .Values.config.retryBaseDelayMs | quote }}
WORKER_TIMEOUT_MS: {{ .Values.config.workerTimeoutMs | quote }}
LOG_LEVEL: {{ .Values.config.logLevel | quote }}
LOG_FORMAT: {{ .Values.config.logFormat | quote }}
GUNICORN_WORKERS: {{ .Values.api.gunicornWorkers | quote }}
BEAT_METRICS_PORT: {{ .Values.beat.metricsPort | quote }}
WORKER_PROCESSES: {{ .Values.worker.processes | quote }}
WORKER_THREADS: {{ .Values.worker.threads | quote }}
TICK_THREADS: {{ .Values.worker.tickThreads | quote }}
HEARTBEAT_DIR: "/tmp"
{{- end }}

{{/*
The secret environment variables, read from the Secret by key. Usage: include with (dict "ctx" $ "secretName" NAME).
SECRET_KEYS and SMTP_PASSWORD are optional: an existingSecret made without them (or before they existed) still
starts the pods, which then store secret config fields only by reference and have an empty SMTP password.
*/}}
{{- define "cronwork.secretEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .ctx.Values.secrets.databaseUrlKey }}
- name: BROKER_URL
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .ctx.Values.secrets.brokerUrlKey }}
- name: SECRET_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .ctx.Values.secrets.secretKeysKey }}
      optional: true
- name: SMTP_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .ctx.Values.secrets.smtpPasswordKey }}
      optional: true
{{- end }}

{{/*
The chart-managed Secret's data (key: value), shared by the Secret, its hook copy for the migration Job and the
checksum that rolls the pods. Every key is written, an unused one empty (the services' default).
*/}}
{{- define "cronwork.secretData" -}}
{{ .Values.secrets.databaseUrlKey }}: {{ .Values.secrets.databaseUrl | quote }}
{{ .Values.secrets.brokerUrlKey }}: {{ .Values.secrets.brokerUrl | quote }}
{{ .Values.secrets.secretKeysKey }}: {{ .Values.secrets.secretKeys | quote }}
{{ .Values.secrets.smtpPasswordKey }}: {{ .Values.secrets.smtpPassword | quote }}
{{- end }}

{{/*
The environment of the api, worker and beat containers: the ConfigMap, then the credentials from the Secret.
*/}}
{{- define "cronwork.env" -}}
envFrom:
  - configMapRef:
      name: {{ include "cronwork.fullname" . }}
env:
  {{- include "cronwork.secretEnv" (dict "ctx" . "secretName" (include "cronwork.secretName" .)) | nindent 2 }}
{{- end }}

{{/*
Annotations that roll the pods when their configuration changes (Kubernetes does not restart pods when a
ConfigMap or Secret they read changes). An existingSecret is outside the chart: restart the pods yourself.
*/}}
{{- define "cronwork.checksumAnnotations" -}}
checksum/config: {{ include "cronwork.settings" . | sha256sum }}
{{- if not .Values.secrets.existingSecret }}
checksum/secret: {{ include "cronwork.secretData" . | sha256sum }}
{{- end }}
{{- end }}

{{/* The /tmp emptyDir every pod mounts: the only place the processes write, so the root filesystem is read-only. */}}
{{- define "cronwork.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpVolume.sizeLimit }}
{{- end }}

{{- define "cronwork.tmpVolumeMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{/*
Pod-level fields shared by the Deployments. Usage: include "cronwork.podSpecCommon" (dict "ctx" $ "role" .Values.worker)
*/}}
{{- define "cronwork.podSpecCommon" -}}
serviceAccountName: {{ include "cronwork.serviceAccountName" .ctx }}
automountServiceAccountToken: {{ .ctx.Values.serviceAccount.automountServiceAccountToken }}
{{- with .ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .ctx.Values.podSecurityContext | nindent 2 }}
{{- with .role.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .role.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .role.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .role.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  {{- include "cronwork.tmpVolume" .ctx | nindent 2 }}
{{- end }}

{{/*
Probe timings from values plus the handler chosen by the chart. Usage:
include "cronwork.probe" (dict "timings" .Values.api.livenessProbe "handler" (dict "httpGet" (dict "path" "/healthz" "port" "http")))
*/}}
{{- define "cronwork.probe" -}}
{{- toYaml (merge (deepCopy .handler) .timings) }}
{{- end }}

{{/* Refuse two autoscalers on the workers: KEDA manages its own HPA, and two HPAs on one Deployment fight. */}}
{{- define "cronwork.worker.checkAutoscalers" -}}
{{- if and .Values.worker.autoscaling.enabled .Values.worker.keda.enabled }}
{{- fail "worker.autoscaling.enabled and worker.keda.enabled are mutually exclusive: KEDA creates its own HorizontalPodAutoscaler. Enable one of them." }}
{{- end }}
{{- if and .Values.worker.autoscaling.enabled (gt (int .Values.worker.autoscaling.minReplicas) (int .Values.worker.autoscaling.maxReplicas)) }}
{{- fail "worker.autoscaling.minReplicas must not exceed worker.autoscaling.maxReplicas" }}
{{- end }}
{{- if and .Values.worker.keda.enabled (gt (int .Values.worker.keda.minReplicaCount) (int .Values.worker.keda.maxReplicaCount)) }}
{{- fail "worker.keda.minReplicaCount must not exceed worker.keda.maxReplicaCount" }}
{{- end }}
{{- end }}

{{/* The PodDisruptionBudget's budget: minAvailable when set, else maxUnavailable. */}}
{{- define "cronwork.pdbBudget" -}}
{{- if ne (toString .minAvailable) "" -}}
minAvailable: {{ .minAvailable }}
{{- else if ne (toString .maxUnavailable) "" -}}
maxUnavailable: {{ .maxUnavailable }}
{{- else -}}
{{- fail "a PodDisruptionBudget needs pdb.minAvailable or pdb.maxUnavailable" -}}
{{- end -}}
{{- end }}

{{/*
The PromQL label matchers that pick this release's series in the alerts: metrics.prometheusRule.selector, or the
release's namespace, which the Prometheus Operator puts on every series it scrapes.
*/}}
{{- define "cronwork.alertSelector" -}}
{{- default (printf "namespace=%q" .Release.Namespace) .Values.metrics.prometheusRule.selector }}
{{- end }}

{{/*
An alert's labels and annotations. Usage: include "cronwork.alertMetadata" (dict "ctx" $ "name" "CronworkX"
"alert" .Values.metrics.prometheusRule.alerts.x "summary" "..." "description" "..."). The runbook is the alert's
section of docs/operations.md, whose heading is the alert's name (so its anchor is the name in lower case).
*/}}
{{- define "cronwork.alertMetadata" -}}
labels:
  severity: {{ .alert.severity }}
  {{- with .ctx.Values.metrics.prometheusRule.alertLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
annotations:
  summary: {{ .summary | quote }}
  description: {{ .description | quote }}
  runbook: {{ printf "docs/operations.md#%s" (lower .name) | quote }}
  {{- with .ctx.Values.metrics.prometheusRule.runbookBaseUrl }}
  runbook_url: {{ printf "%s#%s" . (lower $.name) | quote }}
  {{- end }}
{{- end }}

{{/* A PodMonitor of one role's `metrics` port. Usage: include "cronwork.podMonitor" (dict "ctx" $ "component" "worker") */}}
{{- define "cronwork.podMonitor" -}}
apiVersion: monitoring.coreos.com/v1
kind: PodMonitor
metadata:
  name: {{ include "cronwork.fullname" .ctx }}-{{ .component }}
  labels:
    {{- include "cronwork.labels" . | nindent 4 }}
    {{- with .ctx.Values.metrics.podMonitor.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "cronwork.selectorLabels" . | nindent 6 }}
  namespaceSelector:
    matchNames:
      - {{ .ctx.Release.Namespace }}
  podMetricsEndpoints:
    - port: metrics
      path: /metrics
      interval: {{ .ctx.Values.metrics.podMonitor.interval }}
      scrapeTimeout: {{ .ctx.Values.metrics.podMonitor.scrapeTimeout }}
{{- end }}
