// The shape a dashboard in dashboards/*.json must have, built from Grafana's
// published schema (@grafana/schema). check.mjs wraps each dashboard JSON as
// a constant of these types and `tsc --noEmit --strict` type-checks it.
//
// Object literals get TypeScript's excess-property check, so a misspelled
// or misplaced field fails as well as a wrong type or a missing required
// field. Panel options and field config are checked against each panel
// plugin's own schema (timeseries, stat, state-timeline).

import type {
  DataQuery,
  Dashboard,
  FieldConfigSource,
  Panel,
  RowPanel,
  VariableModel,
} from '@grafana/schema';
import type * as StatPanel from '@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen';
import type * as StateTimelinePanel from '@grafana/schema/dist/esm/raw/composable/statetimeline/panelcfg/x/StateTimelinePanelCfg_types.gen';
import type * as TimeSeriesPanel from '@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen';

/**
 * How a schema type is spelled in JSON: the schema declares some fields as
 * TypeScript string enums (e.g. ThresholdsMode.Absolute), which JSON writes
 * as their string values ("absolute"). Everything else is unchanged.
 */
export type Json<T> = T extends string
  ? `${T}`
  : T extends number | boolean | null | undefined
    ? T
    : T extends ReadonlyArray<infer U>
      ? Json<U>[]
      : T extends object
        ? { [K in keyof T]: Json<T[K]> }
        : T;

/** Every panel and query uses the dashboard's datasource variable. */
export interface PromDatasource {
  type: 'prometheus';
  uid: '${DS_PROMETHEUS}';
}

/**
 * A Prometheus query target. @grafana/schema types targets only as
 * DataQuery (refId, hide, ...); the Prometheus fields are the datasource's.
 */
export interface PromTarget extends DataQuery {
  datasource: PromDatasource;
  expr: string;
  refId: string;
  legendFormat?: string;
  editorMode?: 'code' | 'builder';
  range?: boolean;
  instant?: boolean;
  format?: 'time_series' | 'table' | 'heatmap';
  interval?: string;
  exemplar?: boolean;
}

type PanelOf<TType extends string, TOptions, TFieldConfig> = Omit<
  Panel,
  'type' | 'options' | 'fieldConfig' | 'targets' | 'datasource'
> & {
  type: TType;
  datasource: PromDatasource;
  options: TOptions;
  fieldConfig: FieldConfigSource<TFieldConfig>;
  targets: PromTarget[];
};

export type TypedPanel =
  | PanelOf<'timeseries', TimeSeriesPanel.Options, TimeSeriesPanel.FieldConfig>
  | PanelOf<'stat', StatPanel.Options, Record<string, never>>
  | PanelOf<'state-timeline', StateTimelinePanel.Options, StateTimelinePanel.FieldConfig>
  | (Omit<RowPanel, 'panels'> & { panels: [] });

/** A dashboard as stored in dashboards/*.json. */
export type CheckedDashboard = Json<
  Omit<Dashboard, 'panels' | 'templating'> & {
    panels: TypedPanel[];
    templating: { list: VariableModel[] };
  }
>;

/** Grafana's own root type, in its JSON spelling. */
export type GrafanaDashboard = Json<Dashboard>;
