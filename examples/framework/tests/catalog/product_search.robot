*** Settings ***
Documentation    Searching the catalog and browsing categories.
Resource    resources/common.resource
Resource    resources/catalog.resource
Suite Setup    Open Shop Session
Suite Teardown    Close Shop Session


*** Test Cases ***
SHOP-108 Search Products By Name
    [Documentation]    Search matches part of the product name, ignoring case.
    [Tags]    SHOP-108    catalog    smoke
    ${products}=    Search Products    code
    Product Should Be Listed    ${products}    Clean Code
    Search Result Count Should Be    ${products}    1

SHOP-109 Filter Products By Category
    [Documentation]    Browsing a category shows only the products of that category.
    [Tags]    SHOP-109    catalog    regression
    ${products}=    Filter Products By Category    books
    Product Should Be Listed    ${products}    Clean Code
    Product Should Be Listed    ${products}    The Pragmatic Programmer
    Product Should Not Be Listed    ${products}    USB-C Charger 65W
    Search Result Count Should Be    ${products}    2

SHOP-110 Search Without Matches Returns No Products
    [Documentation]    A search term without matches gives an empty result, not an error.
    [Tags]    SHOP-110    catalog    regression
    ${products}=    Search Products    unicorn
    Search Result Count Should Be    ${products}    0
